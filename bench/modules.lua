-- wrk script of bench/modules.py: each thread cycles through its own requests (one POST each), so
-- the connections of a thread spread over its creators, merchants or vouchers.
-- Its argument (after `--` on wrk's command line) is a file with one request per line,
-- tab-separated:
--   thread  path  token  body  at0
-- A line belongs to wrk thread `thread` (1-based; taken modulo the largest thread number in the
-- file, so any -t works). An empty token sends no Authorization. In the body, @AT@ becomes a
-- distinct ISO-8601 UTC time per request of the thread: at0 (epoch seconds) plus the thread's
-- request count in seconds (a signup's planned_live_at: one active signup per creator and time).
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("index", threads)
end

local mine, n = {}, 0
function init(args)
  local lines, most = {}, 1
  for line in io.lines(args[1]) do
    local f = {}
    for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
    f[1] = tonumber(f[1])
    if f[1] > most then most = f[1] end
    lines[#lines + 1] = f
  end
  local me = ((index - 1) % most) + 1
  for _, f in ipairs(lines) do
    if f[1] == me then
      local h = {["Content-Type"] = "application/json"}
      if f[3] ~= "" then h["Authorization"] = "Bearer " .. f[3] end
      mine[#mine + 1] = {path = f[2], headers = h, body = f[4], at0 = tonumber(f[5]) or 0}
    end
  end
end

function request()
  n = n + 1
  local r = mine[((n - 1) % #mine) + 1]
  local body = r.body
  if body:find("@AT@", 1, true) then
    body = body:gsub("@AT@", os.date("!%Y-%m-%dT%H:%M:%S+00:00", r.at0 + n))
  end
  return wrk.format("POST", r.path, r.headers, body)
end
