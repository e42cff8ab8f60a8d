-- wrk script: GET /recommend for a random ml-1m user id per request.
-- Usage: wrk -t2 -c50 -d30s --latency -s benchmarks/wrk_recommend.lua http://127.0.0.1:8000
math.randomseed(1)
request = function()
  return wrk.format("GET", "/recommend?user=" .. math.random(1, 6040) .. "&n=10")
end
