-- wrk script for the showdown's CPU work: every request is POST /work/hash?rounds=N (the URL's
-- query) with a fixed 32-byte body; prints WRKJSON (report.lua) at the end.
local dir = debug.getinfo(1, 'S').source:match('^@(.*/)') or './'
dofile(dir .. '../report.lua')

wrk.method = "POST"
wrk.body = "correct horse battery staple 32b"
wrk.headers["Content-Type"] = "application/octet-stream"
