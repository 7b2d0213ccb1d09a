// The showdown's jetty peer (bench/peers/SHOWDOWN.md): embedded Jetty 9 (Debian's libjetty9-java)
// with a plain HttpServlet per endpoint group on a QueuedThreadPool, JDBC through a HikariCP
// pool (Debian's libhikaricp-java, the pool Spring Boot uses), JSON with Jackson (Debian's
// libjackson2-databind-java): the blocking servlet model Spring MVC runs on.
//
//   HelloServlet     GET /plaintext, /json          WorldServlet  GET /db, /queries, /updates
//   FortunesServlet  GET /fortunes                  TodosServlet  /api/todos, /api/todos/ID
//   HashServlet      POST /work/hash?rounds=N       HealthServlet GET /healthz
//
// Env: HOST, PORT, WORKERS, DATABASE_URL (postgres://user@host:port/db, turned into the JDBC URL
// below). Build: javac -cp JARS -d out Server.java (see jetty.peer.json). The class is Server,
// like the other Java peers'; Jetty's own Server is named with its package.
//
// Threads: a QueuedThreadPool of at most 10 x WORKERS + 2 threads: the ServerConnector leases
// one acceptor and one selector thread from it on one or two CPUs, the rest run requests; the
// HikariCP pool holds 10 x WORKERS connections, so a request thread never waits for one. A
// servlet borrows a connection per request (try-with-resources) rather than keeping one per
// thread: Jetty's pool starts and stops threads as load changes.
//
// The database code is the jdk-httpserver peer's (bench/peers/java/Server.java): statements
// prepared per request, /updates in one transaction as one JDBC batch with the ids sorted.
// /work/hash runs PBKDF2WithHmacSHA256 (javax.crypto) on the request threads, as a servlet
// does; GET /healthz is answered by a request thread too (it waits for a free one when every
// thread is hashing).
//
// Jetty and HikariCP log through SLF4J to java.util.logging (INFO: their start, nothing per
// request). The JVM keeps its defaults: the serial collector on 1 CPU, G1 on 2, the default
// maximum heap. SIGTERM: the JVM's default handling exits (status 143).
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import javax.servlet.ServletException;
import javax.servlet.http.HttpServlet;
import javax.servlet.http.HttpServletRequest;
import javax.servlet.http.HttpServletResponse;
import javax.sql.DataSource;
import org.eclipse.jetty.http.BadMessageException;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;
import org.eclipse.jetty.util.thread.QueuedThreadPool;

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


    static DataSource pool;

    public static void main(String[] args) throws Exception {
        String host = System.getenv().getOrDefault("HOST", "127.0.0.1");
        int port = Integer.parseInt(System.getenv().getOrDefault("PORT", "8080"));
        int workers = Integer.parseInt(System.getenv().getOrDefault("WORKERS", "1"));
        String db = System.getenv("DATABASE_URL");
        if (db != null) {
            HikariConfig cfg = new HikariConfig();
            cfg.setJdbcUrl(jdbcUrl(db));
            cfg.setMaximumPoolSize(10 * workers);
            pool = new HikariDataSource(cfg);
        }
        QueuedThreadPool threads = new QueuedThreadPool(10 * workers + 2);
        threads.setName("jetty");
        org.eclipse.jetty.server.Server server = new org.eclipse.jetty.server.Server(threads);
        ServerConnector connector = new ServerConnector(server);
        connector.setHost(host);
        connector.setPort(port);
        connector.setAcceptQueueSize(1024);
        server.addConnector(connector);
        ServletContextHandler context = new ServletContextHandler();
        context.addServlet(new ServletHolder(new HelloServlet()), "/plaintext");
        context.addServlet(new ServletHolder(new HelloServlet()), "/json");
        context.addServlet(new ServletHolder(new WorldServlet()), "/db");
        context.addServlet(new ServletHolder(new WorldServlet()), "/queries");
        context.addServlet(new ServletHolder(new WorldServlet()), "/updates");
        context.addServlet(new ServletHolder(new FortunesServlet()), "/fortunes");
        ServletHolder todos = new ServletHolder(new TodosServlet());
        context.addServlet(todos, "/api/todos");
        context.addServlet(todos, "/api/todos/*");
        context.addServlet(new ServletHolder(new HashServlet()), "/work/hash");
        context.addServlet(new ServletHolder(new HealthServlet()), "/healthz");
        server.setHandler(context);
        server.start();
        System.out.println("jetty on http://" + host + ":" + port + ", " + threads.getMaxThreads()
                + " threads, " + 10 * workers + " connections");
        server.join();
    }

    static void send(HttpServletResponse resp, Reply r) throws IOException {
        resp.setStatus(r.status());
        for (int i = 0; i + 1 < r.headers().length; i += 2) {
            resp.setHeader(r.headers()[i], r.headers()[i + 1]);
        }
        if (r.type() != null) {
            resp.setContentType(r.type());
            resp.setContentLength(r.body().length);
            try (OutputStream out = resp.getOutputStream()) {
                out.write(r.body());
            }
        }
    }

    static byte[] body(HttpServletRequest req) throws IOException {
        try (InputStream in = req.getInputStream()) {
            byte[] b = in.readNBytes(MAX_BODY + 1);
            if (b.length > MAX_BODY) {
                throw new BadMessageException(413, "the body is larger than 1 MiB");
            }
            return b;
        }
    }

    /**
     * The first value of the query parameter `name`, decoded, or null. Not getParameter(): on a
     * POST sent as a form (curl -d) that would read the body as form fields.
     */
    static String query(HttpServletRequest req, String name) {
        String q = req.getQueryString();
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

    static final class HelloServlet extends HttpServlet {
        @Override
        protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
            send(resp, req.getServletPath().equals("/json")
                    ? Reply.json(200, new Message("Hello, World!"))
                    : new Reply(200, "text/plain", "Hello, World!".getBytes(StandardCharsets.UTF_8)));
        }
    }

    static final class HealthServlet extends HttpServlet {
        @Override
        protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
            send(resp, new Reply(200, "text/plain", new byte[] {'o', 'k'}));
        }
    }

    static final class WorldServlet extends HttpServlet {
        @Override
        protected void doGet(HttpServletRequest req, HttpServletResponse resp)
                throws IOException, ServletException {
            try (Connection c = pool.getConnection()) {
                int n = queries(req.getParameter("queries"));
                send(resp, switch (req.getServletPath()) {
                    case "/db" -> Reply.json(200, readWorld(c, randomId()));
                    case "/queries" -> Reply.json(200, readWorlds(c, n));
                    default -> Reply.json(200, updateWorlds(c, n));
                });
            } catch (SQLException e) {
                throw new ServletException(e);
            }
        }
    }

    static final class FortunesServlet extends HttpServlet {
        @Override
        protected void doGet(HttpServletRequest req, HttpServletResponse resp)
                throws IOException, ServletException {
            try (Connection c = pool.getConnection()) {
                send(resp, new Reply(200, "text/html; charset=utf-8",
                        fortunes(c).getBytes(StandardCharsets.UTF_8)));
            } catch (SQLException e) {
                throw new ServletException(e);
            }
        }
    }

    static final class HashServlet extends HttpServlet {
        @Override
        protected void doPost(HttpServletRequest req, HttpServletResponse resp) throws IOException {
            send(resp, hash(query(req, "rounds"), body(req)));
        }
    }

    /** The REST resource: service() itself, since HttpServlet has no doPatch. */
    static final class TodosServlet extends HttpServlet {
        @Override
        protected void service(HttpServletRequest req, HttpServletResponse resp)
                throws IOException, ServletException {
            String method = req.getMethod();
            byte[] body = method.equals("GET") || method.equals("DELETE") ? null : body(req);
            try (Connection c = pool.getConnection()) {
                send(resp, todos(c, method, req.getRequestURI(), query(req, "limit"),
                        query(req, "after"), body));
            } catch (SQLException e) {
                throw new ServletException(e);
            }
        }
    }

    /** postgres://user[:password]@host:port/db -> jdbc:postgresql://host:port/db?user=... */
    static String jdbcUrl(String databaseUrl) {
        URI u = URI.create(databaseUrl);
        String[] user = (u.getUserInfo() == null ? "postgres" : u.getUserInfo()).split(":", 2);
        return "jdbc:postgresql://" + u.getHost() + ":" + (u.getPort() < 0 ? 5432 : u.getPort())
                + u.getPath() + "?user=" + user[0] + (user.length > 1 ? "&password=" + user[1] : "");
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
