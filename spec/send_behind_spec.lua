
describe("uring.http: one task switch per request #io #net", function()
  helpers.leak_check(before_each, after_each)

  it("a keep-alive request costs its server one resume and its client one", function()
    run(function()
      local srv = assert(uring.http.server { port = 0, handler = function(_, res)
        res:header("Content-Type", "text/plain")
        res:finish("hi\n")
      end })
      local serving = uring.spawn(srv.serve, srv)
      local c = assert(uring.connect("127.0.0.1", srv:port()))
      local function get()
        assert(c:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        local head = assert(c:receive_head and c:receive("*l"))
        assert.equal("HTTP/1.1 200 OK", head)
        repeat local l = assert(c:receive("*l")) until l == ""
        assert.equal("hi", c:receive("*l"))
      end
      for _ = 1, 5 do get() end      -- the connection and its task are set up
      local n, r0 = 200, uring.stats().resumes
      for _ = 1, n do get() end
      local per = (uring.stats().resumes - r0) / n
      -- 2: the server's wait for the request, the client's for the
      -- answer (sends park neither: 4 before)
      assert.is_true(per < 2.5, ("%.2f resumes per request"):format(per))
      c:close()
      srv:close()
      assert(serving:join())
    end)
  end)
end)
