// The showdown's jdk-httpserver peer (bench/peers/SHOWDOWN.md): the JDK's own HTTP server
// (com.sun.net.httpserver) on a fixed pool of worker threads, each with its own JDBC connection
// to PostgreSQL: the blocking thread-per-request model that Spring MVC with JDBC comes down to.
// JSON with Jackson (Debian's libjackson2-databind-java), the serializer Spring uses.
//
//   GET /plaintext, /json, /db, /queries?queries=N, /fortunes, /updates?queries=N
//   /api/todos (GET list, POST), /api/todos/ID (GET, PUT, PATCH, DELETE)
//   POST /work/hash?rounds=N   GET /healthz
//
// Env: HOST, PORT, WORKERS (threads = 10 x WORKERS), DATABASE_URL (postgres://user@host:port/db,
// turned into the JDBC URL below). Build: javac -cp JARS -d out Server.java (see jdk-httpserver.peer.json).
//
// The database code: one connection per worker thread, opened
// on its first request and kept (the pool is fixed, so its threads live as long as the server);
// statements prepared per request with try-with-resources, as JdbcTemplate does (the driver
// keeps them prepared on the server after prepareThreshold = 5 uses of one SQL text). /updates
// reads the rows and writes them back in ONE transaction, as one JDBC batch with the ids sorted,
// so that concurrent updates lock rows in one order (no deadlocks); an id drawn twice keeps its
// last new number (the sort is stable).
//
// /work/hash runs PBKDF2WithHmacSHA256 (javax.crypto) on the same worker threads: the server's
// dispatcher thread only accepts and parses, so GET /healthz is answered while hashes run as long
// as a worker is free. The body is decoded as UTF-8 into the char[] password PBEKeySpec takes
// (the JDK encodes it back to UTF-8 bytes), so a body that is not UTF-8 hashes differently from
// crest's.
//
// The JVM keeps its defaults (the tool pins it with taskset): on one CPU it picks the serial
// collector, on two the G1 collector; the heap's maximum is the default quarter of the memory.
// SIGTERM: the JVM's default handling ends the process (exit status 143).
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadLocalRandom;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;

public final class Server {
    static final ObjectMapper MAPPER =
            new ObjectMapper().enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    static final String WORLD = "SELECT id, randomNumber FROM World WHERE id = ?";
    static final String UPDATE = "UPDATE World SET randomNumber = ? WHERE id = ?";
    static final String FORTUNES = "SELECT id, message FROM Fortune";
    static final String EXTRA = "Additional fortune added at request time.";
    static final String TODO_GET = "SELECT id, title, done FROM todo WHERE id = ?";
    static final String TODO_LIST = "SELECT id, title, done FROM todo WHERE id > ? ORDER BY id LIMIT ?";
    static final String TODO_ADD = "INSERT INTO todo (title, done) VALUES (?, ?) RETURNING id, title, done";
    static final String TODO_SET = "UPDATE todo SET title = COALESCE(?, title), done = COALESCE(?, done)"
            + " WHERE id = ? RETURNING id, title, done";
    static final String TODO_DEL = "DELETE FROM todo WHERE id = ?";
    static final String TODOS = "/api/todos";
    static final long MAX_ID = 1L << 53; // ids beyond this would not survive a JSON number as a double
    static final byte[] SALT = "crest-work-hash".getBytes(StandardCharsets.UTF_8);
    static final int MAX_BODY = 1 << 20;

    record Message(String message) {}

    record World(int id, int randomNumber) {}

    record Fortune(int id, String message) {}

    record Todo(long id, String title, boolean done) {}

    record Digest(String algorithm, int rounds, String salt, int length, String digest) {}

    /** An answer: status, Content-Type (null: no body), body, and extra header pairs. */
    record Reply(int status, String type, byte[] body, String... headers) {
        static Reply json(int status, Object value, String... headers) {
            try {
                return new Reply(status, "application/json", MAPPER.writeValueAsBytes(value), headers);
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }
    }

    static String url;

    // One connection per worker thread, opened on its first request and kept.
    static final ThreadLocal<Connection> CONNECTION = ThreadLocal.withInitial(() -> {
        try {
            return DriverManager.getConnection(url);
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    });

    interface Handler {
        Reply handle(HttpExchange ex) throws IOException, SQLException;
    }

    public static void main(String[] args) throws IOException {
        String host = System.getenv().getOrDefault("HOST", "127.0.0.1");
        int port = Integer.parseInt(System.getenv().getOrDefault("PORT", "8080"));
        int workers = Integer.parseInt(System.getenv().getOrDefault("WORKERS", "1"));
        String db = System.getenv("DATABASE_URL");
        url = db == null ? null : jdbcUrl(db);
        int threads = 10 * workers;
        HttpServer server = HttpServer.create(new InetSocketAddress(host, port), 1024);
        route(server, "/plaintext", "GET", ex -> new Reply(200, "text/plain",
                "Hello, World!".getBytes(StandardCharsets.UTF_8)));
        route(server, "/json", "GET", ex -> Reply.json(200, new Message("Hello, World!")));
        route(server, "/db", "GET", ex -> Reply.json(200, readWorld(CONNECTION.get(), randomId())));
        route(server, "/queries", "GET",
                ex -> Reply.json(200, readWorlds(CONNECTION.get(), queries(query(ex, "queries")))));
        route(server, "/updates", "GET",
                ex -> Reply.json(200, updateWorlds(CONNECTION.get(), queries(query(ex, "queries")))));
        route(server, "/fortunes", "GET", ex -> new Reply(200, "text/html; charset=utf-8",
                fortunes(CONNECTION.get()).getBytes(StandardCharsets.UTF_8)));
        route(server, "/work/hash", "POST", ex -> hash(query(ex, "rounds"), body(ex)));
        route(server, "/healthz", "GET", ex -> new Reply(200, "text/plain", new byte[] {'o', 'k'}));
        server.createContext(TODOS, ex -> answer(ex, () -> todos(CONNECTION.get(),
                ex.getRequestMethod(), ex.getRequestURI().getPath(), query(ex, "limit"),
                query(ex, "after"), ex.getRequestMethod().equals("GET") ? null : body(ex))));
        server.createContext("/", ex -> answer(ex, () -> error(404, "not found", null)));
        server.setExecutor(Executors.newFixedThreadPool(threads));
        server.start();
        System.out.println("jdk-httpserver on http://" + host + ":" + port + ", " + threads + " threads");
    }

    /** postgres://user[:password]@host:port/db -> jdbc:postgresql://host:port/db?user=... */
    static String jdbcUrl(String databaseUrl) {
        URI u = URI.create(databaseUrl);
        String[] user = (u.getUserInfo() == null ? "postgres" : u.getUserInfo()).split(":", 2);
        return "jdbc:postgresql://" + u.getHost() + ":" + (u.getPort() < 0 ? 5432 : u.getPort())
                + u.getPath() + "?user=" + user[0] + (user.length > 1 ? "&password=" + user[1] : "");
    }

    interface Call {
        Reply call() throws IOException, SQLException;
    }

    static void route(HttpServer server, String path, String method, Handler h) {
        server.createContext(path, ex -> answer(ex, () -> {
            if (!ex.getRequestURI().getPath().equals(path)) {
                return error(404, "not found", null);
            }
            if (!ex.getRequestMethod().equals(method)) {
                return error(405, "method not allowed", null, "Allow", method);
            }
            return h.handle(ex);
        }));
    }

    static void answer(HttpExchange ex, Call call) throws IOException {
        try (ex) {
            Reply r;
            try {
                r = call.call();
            } catch (TooLarge e) {
                r = error(413, "the body is larger than 1 MiB", null, "Connection", "close");
            } catch (SQLException | RuntimeException e) { // RuntimeException: no connection
                System.err.println(ex.getRequestURI() + ": " + e);
                dropBrokenConnection();
                r = error(500, "database error", null);
            }
            for (int i = 0; i + 1 < r.headers().length; i += 2) {
                ex.getResponseHeaders().set(r.headers()[i], r.headers()[i + 1]);
            }
            if (r.type() == null) {
                ex.sendResponseHeaders(r.status(), -1);
                return;
            }
            ex.getResponseHeaders().set("Content-Type", r.type());
            ex.sendResponseHeaders(r.status(), r.body().length);
            try (OutputStream out = ex.getResponseBody()) {
                out.write(r.body());
            }
        }
    }

    /** A failed statement may have been a lost connection: the next request opens a new one. */
    static void dropBrokenConnection() {
        try {
            if (!CONNECTION.get().isValid(1)) {
                CONNECTION.get().close();
                CONNECTION.remove();
            }
        } catch (SQLException | IllegalStateException e) {
            CONNECTION.remove();
        }
    }

    /** A request body beyond MAX_BODY: answered 413. */
    static final class TooLarge extends RuntimeException {
        TooLarge() {
            super(null, null, false, false);
        }
    }

    static byte[] body(HttpExchange ex) throws IOException {
        try (InputStream in = ex.getRequestBody()) {
            byte[] b = in.readNBytes(MAX_BODY + 1);
            if (b.length > MAX_BODY) {
                throw new TooLarge();
            }
            return b;
        }
    }

    /** The first value of the query parameter `name`, decoded, or null. */
    static String query(HttpExchange ex, String name) {
        String q = ex.getRequestURI().getRawQuery();
        if (q == null) {
            return null;
        }
        for (String pair : q.split("&")) {
            int eq = pair.indexOf('=');
            String key = eq < 0 ? pair : pair.substring(0, eq);
            if (key.equals(name)) {
                return eq < 0 ? "" : URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8);
            }
        }
        return null;
    }

    // ---- the workloads: plain JDBC and Jackson, the same in the three Java peers ----

    static Reply error(int status, String message, String field, String... headers) {
        ObjectNode o = MAPPER.createObjectNode().put("error", message);
        if (field != null) {
            o.put("field", field);
        }
        return Reply.json(status, o, headers);
    }

    /** A whole decimal number of at most max, or -1 (null, empty, a sign, other characters). */
    static long number(String s, long max) {
        if (s == null || s.isEmpty() || s.length() > 18) {
            return -1;
        }
        long v = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < '0' || c > '9') {
                return -1;
            }
            v = v * 10 + (c - '0');
        }
        return v <= max ? v : -1;
    }

    /** ?queries=N clamped to 1..500; missing or not a number: 1. */
    static int queries(String s) {
        if (s == null || s.isEmpty() || !s.chars().allMatch(c -> c >= '0' && c <= '9')) {
            return 1;
        }
        String digits = s.replaceFirst("^0+", "");
        return digits.length() > 3 ? 500 : Math.min(Math.max(digits.isEmpty() ? 0 : Integer.parseInt(digits), 1), 500);
    }

    static int randomId() {
        return ThreadLocalRandom.current().nextInt(1, 10001);
    }

    static World readWorld(Connection c, int id) throws SQLException {
        try (PreparedStatement st = c.prepareStatement(WORLD)) {
            st.setInt(1, id);
            try (ResultSet rs = st.executeQuery()) {
                rs.next();
                return new World(rs.getInt(1), rs.getInt(2));
            }
        }
    }

    static List<World> readWorlds(Connection c, int n) throws SQLException {
        List<World> worlds = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            worlds.add(readWorld(c, randomId()));
        }
        return worlds;
    }

    static List<World> updateWorlds(Connection c, int n) throws SQLException {
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
        return worlds;
    }

    static String escape(String s) {
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

    static String fortunes(Connection c) throws SQLException {
        List<Fortune> rows = new ArrayList<>();
        try (PreparedStatement st = c.prepareStatement(FORTUNES); ResultSet rs = st.executeQuery()) {
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
        return sb.append("</table></body></html>").toString();
    }

    /** POST /work/hash?rounds=N: PBKDF2-HMAC-SHA256 of the body, 32 bytes, as hex. */
    static Reply hash(String roundsParam, byte[] body) {
        long rounds = roundsParam == null ? 1000 : number(roundsParam, 1_000_000);
        if (rounds < 1) {
            return error(400, "rounds must be a whole number from 1 to 1000000", "rounds");
        }
        try {
            SecretKeyFactory f = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256");
            char[] password = new String(body, StandardCharsets.UTF_8).toCharArray();
            byte[] dk = f.generateSecret(new PBEKeySpec(password, SALT, (int) rounds, 256)).getEncoded();
            return Reply.json(200, new Digest("PBKDF2-HMAC-SHA256", (int) rounds, "crest-work-hash", 32,
                    HexFormat.of().formatHex(dk)));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    static Todo todo(ResultSet rs) throws SQLException {
        return new Todo(rs.getLong(1), rs.getString(2), rs.getInt(3) != 0);
    }

    /** The todo the statement's first row holds, or 404. */
    static Reply todoReply(PreparedStatement st, int status, boolean created) throws SQLException {
        try (ResultSet rs = st.executeQuery()) {
            if (!rs.next()) {
                return error(404, "no such todo", null);
            }
            Todo t = todo(rs);
            return created ? Reply.json(status, t, "Location", TODOS + "/" + t.id()) : Reply.json(status, t);
        }
    }

    /** A checked todo body: title null / done null when absent (PATCH), or the refusal. */
    record TodoIn(String title, Boolean done, Reply refusal) {
        static TodoIn refuse(int status, String message, String field) {
            return new TodoIn(null, null, error(status, message, field));
        }
    }

    static TodoIn todoIn(byte[] body, boolean partial) {
        JsonNode root;
        try {
            root = MAPPER.readTree(body);
        } catch (IOException e) {
            return TodoIn.refuse(400, "the body is not JSON", null);
        }
        if (root == null || root.isMissingNode()) {
            return TodoIn.refuse(400, "the body is not JSON", null);
        }
        if (!root.isObject()) {
            return TodoIn.refuse(422, "must be an object", "");
        }
        JsonNode t = root.get("title");
        JsonNode d = root.get("done");
        if (t == null && !partial) {
            return TodoIn.refuse(422, "is required", "title");
        }
        if (t != null && !t.isTextual()) {
            return TodoIn.refuse(422, "must be a string", "title");
        }
        String title = t == null ? null : t.textValue();
        if (title != null) {
            int n = title.codePointCount(0, title.length());
            if (n < 1 || n > 200 || title.indexOf('\0') >= 0) {
                return TodoIn.refuse(422, "must be 1 to 200 characters", "title");
            }
        }
        if (d == null && !partial) {
            return TodoIn.refuse(422, "is required", "done");
        }
        if (d != null && !d.isBoolean()) {
            return TodoIn.refuse(422, "must be a boolean", "done");
        }
        return new TodoIn(title, d == null ? null : d.booleanValue(), null);
    }

    /** /api/todos and /api/todos/ID. body: null for GET. */
    static Reply todos(Connection c, String method, String path, String limitParam, String afterParam,
            byte[] body) throws SQLException {
        if (path.equals(TODOS)) {
            return switch (method) {
                case "GET" -> listTodos(c, limitParam, afterParam);
                case "POST" -> writeTodo(c, 0, body, false);
                default -> error(405, "method not allowed", null, "Allow", "GET, POST");
            };
        }
        if (!path.startsWith(TODOS + "/")) {
            return error(404, "not found", null);
        }
        long id = number(path.substring(TODOS.length() + 1), MAX_ID);
        if (!List.of("GET", "PUT", "PATCH", "DELETE").contains(method)) {
            return error(405, "method not allowed", null, "Allow", "GET, PUT, PATCH, DELETE");
        }
        if (id < 1) {
            return error(404, "no such todo", null);
        }
        switch (method) {
            case "GET":
                try (PreparedStatement st = c.prepareStatement(TODO_GET)) {
                    st.setLong(1, id);
                    return todoReply(st, 200, false);
                }
            case "DELETE":
                try (PreparedStatement st = c.prepareStatement(TODO_DEL)) {
                    st.setLong(1, id);
                    return st.executeUpdate() == 0 ? error(404, "no such todo", null)
                                                   : new Reply(204, null, null);
                }
            default:
                return writeTodo(c, id, body, method.equals("PATCH"));
        }
    }

    /** POST (id 0), PUT, PATCH (partial). */
    static Reply writeTodo(Connection c, long id, byte[] body, boolean partial) throws SQLException {
        TodoIn in = todoIn(body, partial);
        if (in.refusal() != null) {
            return in.refusal();
        }
        if (id == 0) {
            try (PreparedStatement st = c.prepareStatement(TODO_ADD)) {
                st.setString(1, in.title());
                st.setInt(2, in.done() ? 1 : 0);
                return todoReply(st, 201, true);
            }
        }
        try (PreparedStatement st = c.prepareStatement(TODO_SET)) {
            st.setString(1, in.title());
            if (in.done() == null) {
                st.setNull(2, java.sql.Types.INTEGER);
            } else {
                st.setInt(2, in.done() ? 1 : 0);
            }
            st.setLong(3, id);
            return todoReply(st, 200, false);
        }
    }

    /** GET /api/todos?limit=N&after=ID, with a Link to the next page while rows remain. */
    static Reply listTodos(Connection c, String limitParam, String afterParam) throws SQLException {
        long limit = limitParam == null ? 100 : number(limitParam, 1000);
        if (limit < 1) {
            return error(422, "limit must be a whole number from 1 to 1000", "limit");
        }
        long after = afterParam == null ? 0 : number(afterParam, MAX_ID);
        if (after < 0) {
            return error(422, "after must be a whole number", "after");
        }
        List<Todo> page = new ArrayList<>();
        try (PreparedStatement st = c.prepareStatement(TODO_LIST)) {
            st.setLong(1, after);
            st.setLong(2, limit + 1);
            try (ResultSet rs = st.executeQuery()) {
                while (rs.next()) {
                    page.add(todo(rs));
                }
            }
        }
        if (page.size() > limit) {
            page.remove(page.size() - 1);
            String next = TODOS + "?limit=" + limit + "&after=" + page.get(page.size() - 1).id();
            return Reply.json(200, page, "Link", "<" + next + ">; rel=\"next\"");
        }
        return Reply.json(200, page);
    }
}
