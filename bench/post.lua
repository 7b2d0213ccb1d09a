-- wrk script: POST /api/todos with a valid todo body (the demo's and the REST example's
-- validated write), reporting like report.lua. The request is set once here, so wrk keeps its
-- static (fastest) request path. Usage: wrk -s bench/post.lua http://HOST:PORT/api/todos
local dir = debug.getinfo(1, 'S').source:match('^@(.*/)') or './'
dofile(dir .. 'report.lua')

wrk.method = 'POST'
wrk.body = '{"title":"buy milk","done":false}'
wrk.headers['Content-Type'] = 'application/json'
-- The REST example takes writes with its bearer token only (API_TOKEN, default "secret"); the
-- demo ignores the header.
wrk.headers['Authorization'] = 'Bearer secret'
