// Java peer for bench/db.sh: the TechEmpower database tests with the JDK's own HTTP server
// (com.sun.net.httpserver) and the PostgreSQL JDBC driver, the blocking thread-per-request model
// that Spring MVC with JDBC and a connection pool comes down to: a fixed pool of worker threads,
// each with its own JDBC connection. Same bodies as crest demo:
//   GET /db                 {"id":n,"randomNumber":m}
//   GET /queries?queries=N  N such objects (N clamped to 1..500; missing or not a number: 1)
//   GET /updates?queries=N  N rows read, each given a new random number, written back
//   GET /fortunes           the Fortune table plus one row added at request time, as HTML
// Build: javac -cp /usr/share/java/postgresql.jar -d OUT Server.java
// Run:   java -Dsun.net.httpserver.nodelay=true -cp OUT:/usr/share/java/postgresql.jar \
//            Server PORT jdbc:postgresql://127.0.0.1:PGPORT/bench?user=postgres [THREADS]
//
// /updates reads the rows and writes them back in ONE transaction (autocommit off), the writes
// as one JDBC batch of UPDATEs with the ids sorted, so that concurrent updates lock rows in one
// order (no deadlocks); an id drawn twice keeps its last new number (a stable sort).
// Statements are prepared per request with try-with-resources, as JdbcTemplate does; the driver
// keeps them prepared on the server after prepareThreshold (5) uses of one SQL text.
//
// Changed defaults, and why:
// - THREADS worker threads (default 10), each holding one connection for its life: 10 is
//   HikariCP's default maximumPoolSize, the pool Spring Boot uses.
// - sun.net.httpserver.nodelay=true (default false, set on the java command line): the server
//   writes the head and the body of a response separately, so with Nagle's algorithm on, the
//   body waits for the client's delayed ACK of the head (tens of milliseconds).
// - listen backlog 1024 (default 50): wrk opens its connections all at once.
// JSON is written with a StringBuilder: the JDK has no JSON library (Spring would use Jackson).
// The JVM keeps its defaults; pinned to one CPU it picks the serial collector, as in a one-CPU
// container. The server sets Date and Content-length itself; the Server header is set here.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadLocalRandom;

public final class Server {
    private static final String WORLD = "SELECT id, randomNumber FROM World WHERE id = ?";
    private static final String UPDATE = "UPDATE World SET randomNumber = ? WHERE id = ?";
    private static final String FORTUNES = "SELECT id, message FROM Fortune";
    private static final String EXTRA = "Additional fortune added at request time.";

    private static String url;
    // One connection per worker thread, opened on its first request and kept.
    private static final ThreadLocal<Connection> CONNECTION = ThreadLocal.withInitial(() -> {
        try {
            return DriverManager.getConnection(url);
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    });

    private record World(int id, int randomNumber) {}

    private record Fortune(int id, String message) {}

    interface Handler {
        void handle(HttpExchange ex) throws IOException, SQLException;
    }

    public static void main(String[] args) throws IOException {
        int port = Integer.parseInt(args[0]);
        url = args[1];
        int threads = args.length > 2 ? Integer.parseInt(args[2]) : 10;
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 1024);
        route(server, "/db", Server::db);
        route(server, "/queries", Server::queries);
        route(server, "/updates", Server::updates);
        route(server, "/fortunes", Server::fortunes);
        server.setExecutor(Executors.newFixedThreadPool(threads));
        server.start();
        System.out.println("java on 127.0.0.1:" + port + ", " + threads + " threads");
    }

    private static void route(HttpServer server, String path, Handler h) {
        server.createContext(path, ex -> {
            try (ex) {
                if (!ex.getRequestURI().getPath().equals(path)) {
                    send(ex, 404, "text/plain", "not found");
                } else {
                    h.handle(ex);
                }
            } catch (SQLException e) {
                System.err.println(ex.getRequestURI() + ": " + e.getMessage());
                send(ex, 500, "text/plain", "database error");
            }
        });
    }

    private static void send(HttpExchange ex, int status, String type, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Server", "java");
        ex.getResponseHeaders().set("Content-Type", type);
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }

    private static int randomId() {
        return ThreadLocalRandom.current().nextInt(1, 10001);
    }

    private static int queriesParam(HttpExchange ex) {
        String query = ex.getRequestURI().getRawQuery();
        if (query == null) {
            return 1;
        }
        for (String pair : query.split("&")) {
            if (pair.startsWith("queries=")) {
                String v = URLDecoder.decode(pair.substring(8), StandardCharsets.UTF_8);
                if (v.isEmpty() || !v.chars().allMatch(c -> c >= '0' && c <= '9')) {
                    return 1;
                }
                String digits = v.replaceFirst("^0+", "");
                if (digits.length() > 3) {
                    return 500;
                }
                return Math.min(Math.max(digits.isEmpty() ? 0 : Integer.parseInt(digits), 1), 500);
            }
        }
        return 1;
    }

    private static World readWorld(Connection c, int id) throws SQLException {
        try (PreparedStatement st = c.prepareStatement(WORLD)) {
            st.setInt(1, id);
            try (ResultSet rs = st.executeQuery()) {
                rs.next();
                return new World(rs.getInt(1), rs.getInt(2));
            }
        }
    }

    private static List<World> readWorlds(Connection c, int n) throws SQLException {
        List<World> worlds = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            worlds.add(readWorld(c, randomId()));
        }
        return worlds;
    }

    private static String json(World w) {
        return "{\"id\":" + w.id() + ",\"randomNumber\":" + w.randomNumber() + "}";
    }

    private static String json(List<World> worlds) {
        StringBuilder sb = new StringBuilder(worlds.size() * 32 + 2).append('[');
        for (int i = 0; i < worlds.size(); i++) {
            sb.append(i > 0 ? "," : "").append(json(worlds.get(i)));
        }
        return sb.append(']').toString();
    }

    private static void db(HttpExchange ex) throws IOException, SQLException {
        send(ex, 200, "application/json", json(readWorld(CONNECTION.get(), randomId())));
    }

    private static void queries(HttpExchange ex) throws IOException, SQLException {
        send(ex, 200, "application/json", json(readWorlds(CONNECTION.get(), queriesParam(ex))));
    }

    private static void updates(HttpExchange ex) throws IOException, SQLException {
        int n = queriesParam(ex);
        Connection c = CONNECTION.get();
        List<World> worlds = new ArrayList<>(n);
        c.setAutoCommit(false);
        try {
            for (World w : readWorlds(c, n)) {
                worlds.add(new World(w.id(), randomId()));
            }
            List<World> sorted = new ArrayList<>(worlds);
            sorted.sort(Comparator.comparingInt(World::id)); // stable: the last number of an id wins
            try (PreparedStatement st = c.prepareStatement(UPDATE)) {
                for (World w : sorted) {
                    st.setInt(1, w.randomNumber());
                    st.setInt(2, w.id());
                    st.addBatch();
                }
                st.executeBatch();
            }
            c.commit();
        } catch (SQLException e) {
            c.rollback();
            throw e;
        } finally {
            c.setAutoCommit(true);
        }
        send(ex, 200, "application/json", json(worlds));
    }

    private static String escape(String s) {
        StringBuilder sb = new StringBuilder(s.length() + 16);
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            switch (ch) {
                case '&' -> sb.append("&amp;");
                case '<' -> sb.append("&lt;");
                case '>' -> sb.append("&gt;");
                case '"' -> sb.append("&quot;");
                case '\'' -> sb.append("&#39;");
                default -> sb.append(ch);
            }
        }
        return sb.toString();
    }

    private static void fortunes(HttpExchange ex) throws IOException, SQLException {
        List<Fortune> rows = new ArrayList<>();
        try (PreparedStatement st = CONNECTION.get().prepareStatement(FORTUNES);
                ResultSet rs = st.executeQuery()) {
            while (rs.next()) {
                rows.add(new Fortune(rs.getInt(1), rs.getString(2)));
            }
        }
        rows.add(new Fortune(0, EXTRA));
        rows.sort(Comparator.comparing(Fortune::message));
        StringBuilder sb = new StringBuilder(2048).append(
                "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
                        + "<tr><th>id</th><th>message</th></tr>");
        for (Fortune f : rows) {
            sb.append("<tr><td>").append(f.id()).append("</td><td>").append(escape(f.message()))
                    .append("</td></tr>");
        }
        send(ex, 200, "text/html; charset=utf-8", sb.append("</table></body></html>").toString());
    }
}
