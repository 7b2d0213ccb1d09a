// The showdown's netty peer (bench/peers/SHOWDOWN.md): Netty 4 (Debian's libnetty-java) with its
// HTTP codec (HttpServerCodec, HttpServerKeepAliveHandler, HttpObjectAggregator) on a NIO event
// loop group of WORKERS threads. JSON with Jackson (Debian's libjackson2-databind-java).
//
//   GET /plaintext, /json, /healthz                answered on the event loop
//   GET /db, /queries?queries=N, /fortunes, /updates?queries=N, /api/todos[/ID],
//   POST /work/hash?rounds=N                       answered on the blocking executor group
//   GET /ws/chat?room=R&name=N                     WebSocket, on the event loop (below)
//
// Env: HOST, PORT, WORKERS, DATABASE_URL (postgres://user@host:port/db, turned into the JDBC URL
// below). Build: javac -cp JARS -d out Server.java (see netty.peer.json).
//
// Blocking work (JDBC, PBKDF2) never runs on the event loop: the last handler of the pipeline is
// added with a DefaultEventExecutorGroup of 10 x WORKERS threads, the way the ChannelPipeline
// documentation recommends for handlers that block. Netty runs that handler's channelRead on one
// of the group's threads (a channel keeps its thread, so one connection's answers stay in order)
// and the handler writes its response back with ctx.writeAndFlush, which Netty hands to the
// channel's event loop. The quick endpoints are answered by the handler before it, on the loop.
// Each executor thread holds its own JDBC connection (the group's threads live as long as the
// server), as the jdk-httpserver peer's request threads do.
//
// The database code is the jdk-httpserver peer's (bench/peers/java/Server.java): statements
// prepared per request, /updates in one transaction as one JDBC batch with the ids sorted.
// /work/hash runs PBKDF2WithHmacSHA256 (javax.crypto) on the executor group; GET /healthz is
// answered on the event loop, so it stays answerable while hashes run.
//
// The chat WebSocket is Netty's own (netty-codec-http's websocketx, in Debian's libnetty-java):
// WebSocketServerProtocolHandler upgrades /ws/chat (with any query) and answers pings and close
// frames, WebSocketFrameAggregator joins fragmented messages, and ChatHandler, on the event loop,
// keeps a room as a ChannelGroup (Netty's set of channels that writes to all of them, dropping a
// channel once it closes). Rooms live in this JVM and span its event loop threads, so WORKERS
// threads share them. A sender's messages reach each member in the order sent: they are written
// from the sender's event loop, and a write to a channel of another loop is queued on that loop's
// task queue in the order it was made.
//
// Debian's libnetty-java ships no native epoll library (netty-transport-native-epoll's jar has
// no .so), so the transport is NIO. Netty logs through java.util.logging (INFO: nothing per
// request). The JVM keeps its defaults: the serial collector on 1 CPU, G1 on 2, the default
// maximum heap. SIGTERM: the JVM's default handling exits (status 143).
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpServerKeepAliveHandler;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.QueryStringDecoder;
import io.netty.handler.codec.http.websocketx.TextWebSocketFrame;
import io.netty.handler.codec.http.websocketx.WebSocketFrame;
import io.netty.handler.codec.http.websocketx.WebSocketFrameAggregator;
import io.netty.handler.codec.http.websocketx.WebSocketServerProtocolConfig;
import io.netty.handler.codec.http.websocketx.WebSocketServerProtocolHandler;
import io.netty.util.AttributeKey;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.DefaultEventExecutorGroup;
import io.netty.util.concurrent.EventExecutorGroup;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
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


    static final byte[] HELLO = "Hello, World!".getBytes(StandardCharsets.UTF_8);

    static final DateTimeFormatter HTTP_DATE =
            DateTimeFormatter.ofPattern("EEE, dd MMM yyyy HH:mm:ss 'GMT'", Locale.US);

    // The Date header's value, set once a second by the event loop group (as servers do).
    static volatile String date = httpDate();

    static String httpDate() {
        return HTTP_DATE.format(ZonedDateTime.now(ZoneOffset.UTC));
    }

    public static void main(String[] args) throws InterruptedException {
        String host = System.getenv().getOrDefault("HOST", "127.0.0.1");
        int port = Integer.parseInt(System.getenv().getOrDefault("PORT", "8080"));
        int workers = Integer.parseInt(System.getenv().getOrDefault("WORKERS", "1"));
        String db = System.getenv("DATABASE_URL");
        url = db == null ? null : jdbcUrl(db);
        // One group accepts and serves: a separate boss thread would only add a thread per CPU.
        EventLoopGroup group = new NioEventLoopGroup(workers);
        EventExecutorGroup blocking = new DefaultEventExecutorGroup(10 * workers);
        group.scheduleAtFixedRate(() -> date = httpDate(), 1, 1, TimeUnit.SECONDS);
        QuickHandler quick = new QuickHandler();
        BlockingHandler slow = new BlockingHandler();
        ChatHandler chat = new ChatHandler();
        WebSocketServerProtocolConfig ws = WebSocketServerProtocolConfig.newBuilder()
                .websocketPath("/ws/chat")
                .checkStartsWith(true) // the path with a query: /ws/chat?room=R&name=N
                .maxFramePayloadLength(MAX_BODY)
                .build();
        ServerBootstrap b = new ServerBootstrap()
                .group(group)
                .channel(NioServerSocketChannel.class)
                .childHandler(new ChannelInitializer<SocketChannel>() {
                    @Override
                    protected void initChannel(SocketChannel ch) {
                        ChannelPipeline p = ch.pipeline();
                        p.addLast(new HttpServerCodec());
                        p.addLast(new HttpServerKeepAliveHandler());
                        p.addLast(new HttpObjectAggregator(MAX_BODY));
                        p.addLast(new WebSocketServerProtocolHandler(ws));
                        p.addLast(new WebSocketFrameAggregator(MAX_BODY));
                        p.addLast(chat);
                        p.addLast(quick);
                        p.addLast(blocking, slow);
                    }
                });
        b.bind(host, port).sync();
        System.out.println("netty on http://" + host + ":" + port + ", " + workers
                + " event loop threads, " + 10 * workers + " blocking threads");
    }

    static FullHttpResponse response(Reply r) {
        FullHttpResponse res = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1,
                HttpResponseStatus.valueOf(r.status()),
                r.body() == null ? Unpooled.EMPTY_BUFFER : Unpooled.wrappedBuffer(r.body()));
        if (r.type() != null) {
            res.headers().set(HttpHeaderNames.CONTENT_TYPE, r.type());
            res.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, r.body().length);
        }
        res.headers().set(HttpHeaderNames.DATE, date);
        for (int i = 0; i + 1 < r.headers().length; i += 2) {
            res.headers().set(r.headers()[i], r.headers()[i + 1]);
        }
        return res;
    }

    /** The endpoints that never block, answered on the event loop; the rest go down the pipeline. */
    @Sharable
    static final class QuickHandler extends ChannelInboundHandlerAdapter {
        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            FullHttpRequest req = (FullHttpRequest) msg;
            Reply r;
            if (!req.decoderResult().isSuccess()) {
                r = error(400, "bad request", null, "Connection", "close");
            } else {
                String path = new QueryStringDecoder(req.uri()).path();
                String method = req.method().name();
                switch (path) {
                    case "/plaintext" -> r = method.equals("GET") ? new Reply(200, "text/plain", HELLO)
                                                                  : notAllowed("GET");
                    case "/json" -> r = method.equals("GET") ? Reply.json(200, new Message("Hello, World!"))
                                                             : notAllowed("GET");
                    case "/healthz" -> r = new Reply(200, "text/plain", new byte[] {'o', 'k'});
                    default -> r = null;
                }
            }
            if (r == null) {
                ctx.fireChannelRead(msg);
                return;
            }
            ReferenceCountUtil.release(msg);
            ctx.writeAndFlush(response(r));
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            ctx.close(); // a reset connection, a write to a closed one
        }
    }

    static final AttributeKey<String> ROOM = AttributeKey.valueOf("room");
    static final AttributeKey<String> NAME = AttributeKey.valueOf("name");
    // Room name -> its members. compute() and computeIfPresent() make a join and the leave that
    // empties a room atomic, so a member never joins a group that was just dropped.
    static final Map<String, ChannelGroup> ROOMS = new ConcurrentHashMap<>();

    /**
     * /ws/chat: the members of a room as a ChannelGroup; join and leave announced. Runs on the
     * channel's event loop; HTTP requests pass it by to QuickHandler.
     */
    @Sharable
    static final class ChatHandler extends ChannelInboundHandlerAdapter {
        @Override
        public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
            if (!(evt instanceof WebSocketServerProtocolHandler.HandshakeComplete hs)) {
                ctx.fireUserEventTriggered(evt);
                return;
            }
            QueryStringDecoder q = new QueryStringDecoder(hs.requestUri());
            String room = param(q, "room") == null ? "lobby" : param(q, "room");
            String name = param(q, "name") == null ? "anonymous" : param(q, "name");
            Channel ch = ctx.channel();
            ch.attr(ROOM).set(room);
            ch.attr(NAME).set(name);
            ChannelGroup members = ROOMS.compute(room, (k, g) -> {
                g = g == null ? new DefaultChannelGroup(k, GlobalEventExecutor.INSTANCE) : g;
                g.add(ch);
                return g;
            });
            send(members, event("join", room, name));
        }

        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            if (!(msg instanceof WebSocketFrame)) {
                ctx.fireChannelRead(msg); // an HTTP request
                return;
            }
            try {
                if (!(msg instanceof TextWebSocketFrame frame)) {
                    return; // binary: not a chat message
                }
                JsonNode text;
                try {
                    text = MAPPER.readTree(frame.text()).get("text");
                } catch (IOException e) {
                    return; // not JSON: ignored, as crest's demo does
                }
                if (text == null || !text.isTextual()) {
                    return;
                }
                String room = ctx.channel().attr(ROOM).get();
                ChannelGroup members = ROOMS.get(room);
                if (members != null) {
                    ObjectNode m = event("message", room, ctx.channel().attr(NAME).get());
                    m.put("text", text.asText()).put("ts", System.currentTimeMillis());
                    send(members, m);
                }
            } finally {
                ReferenceCountUtil.release(msg);
            }
        }

        @Override
        public void channelInactive(ChannelHandlerContext ctx) {
            Channel ch = ctx.channel();
            String room = ch.attr(ROOM).get();
            if (room != null) {
                ChannelGroup members = ROOMS.computeIfPresent(room, (k, g) -> {
                    g.remove(ch);
                    return g.isEmpty() ? null : g;
                });
                if (members != null) {
                    send(members, event("leave", room, ch.attr(NAME).get()));
                }
            }
            ctx.fireChannelInactive();
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            ctx.close(); // a reset connection, a write to a closed one
        }

        /** {"type":T,"room":R,"name":N}: an ObjectNode keeps the order the fields are put in. */
        static ObjectNode event(String type, String room, String name) {
            return MAPPER.createObjectNode().put("type", type).put("room", room).put("name", name);
        }

        /** One serialisation, written to every member (the group shares the bytes). */
        static void send(ChannelGroup members, ObjectNode event) {
            try {
                members.writeAndFlush(new TextWebSocketFrame(
                        Unpooled.wrappedBuffer(MAPPER.writeValueAsBytes(event))));
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }
    }

    static Reply notAllowed(String allow) {
        return error(405, "method not allowed", null, "Allow", allow);
    }

    /** The endpoints that block (JDBC, PBKDF2): runs on a thread of the blocking executor group. */
    @Sharable
    static final class BlockingHandler extends SimpleChannelInboundHandler<FullHttpRequest> {
        @Override
        protected void channelRead0(ChannelHandlerContext ctx, FullHttpRequest req) {
            QueryStringDecoder q = new QueryStringDecoder(req.uri());
            String method = req.method().name();
            Reply r;
            try {
                r = switch (q.path()) {
                    case "/db" -> get(method, () -> Reply.json(200, readWorld(CONNECTION.get(), randomId())));
                    case "/queries" -> get(method, () -> Reply.json(200,
                            readWorlds(CONNECTION.get(), queries(param(q, "queries")))));
                    case "/updates" -> get(method, () -> Reply.json(200,
                            updateWorlds(CONNECTION.get(), queries(param(q, "queries")))));
                    case "/fortunes" -> get(method, () -> new Reply(200, "text/html; charset=utf-8",
                            fortunes(CONNECTION.get()).getBytes(StandardCharsets.UTF_8)));
                    case "/work/hash" -> method.equals("POST")
                            ? hash(param(q, "rounds"), ByteBufUtil.getBytes(req.content()))
                            : notAllowed("POST");
                    default -> q.path().equals(TODOS) || q.path().startsWith(TODOS + "/")
                            ? todos(CONNECTION.get(), method, q.path(), param(q, "limit"),
                                    param(q, "after"), ByteBufUtil.getBytes(req.content()))
                            : error(404, "not found", null);
                };
            } catch (SQLException | RuntimeException e) { // RuntimeException: no connection
                System.err.println(req.uri() + ": " + e);
                dropBrokenConnection();
                r = error(500, "database error", null);
            }
            ctx.writeAndFlush(response(r));
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            ctx.close();
        }
    }

    interface Call {
        Reply call() throws SQLException;
    }

    static Reply get(String method, Call call) throws SQLException {
        return method.equals("GET") ? call.call() : notAllowed("GET");
    }

    static String param(QueryStringDecoder q, String name) {
        List<String> v = q.parameters().get(name);
        return v == null ? null : v.get(0);
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
