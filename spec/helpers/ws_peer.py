#!/usr/bin/python3
"""A WebSocket peer from python3-websockets (an independent RFC 6455
implementation) for spec/websocket_spec.lua and bench/ws.sh.

  ws_peer.py client URL MIB   talk to a uring server that echoes; print
                              one JSON line of what happened (wss://:
                              the CA file in $WS_CA)
  ws_peer.py server           an echo server on 127.0.0.1, port 0; prints
                              the port, serves until stdin closes (or 60 s)
  ws_peer.py bench URL N SIZE N echo round trips of SIZE-byte messages,
                              8 in flight; prints the seconds taken
"""
import asyncio, hashlib, json, os, random, sys, time
import websockets

async def client(url, mib):
    out = {}
    tls = {}
    if url.startswith("wss://"):
        # wss: the test CA from WS_CA, the host name checked as usual
        import ssl
        tls["ssl"] = ssl.create_default_context(cafile=os.environ["WS_CA"])
    async with websockets.connect(url, subprotocols=["chat"], max_size=None, **tls) as ws:
        out["protocol"] = ws.subprotocol
        await ws.send("héllo ✓")
        r = await ws.recv()
        out["text"] = r == "héllo ✓" and isinstance(r, str)
        await ws.send(b"\x00\xff\x01")
        r = await ws.recv()
        out["binary"] = r == b"\x00\xff\x01"
        await ws.send(["frag", "ment", "ed"])       # three frames, one message
        out["fragmented"] = (await ws.recv()) == "fragmented"
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)
        out["pong"] = True
        # mib MiB of random bytes in 1 MiB messages, echoed, hashed as sent
        # and as received
        rnd = random.Random(15)
        sent, got = hashlib.sha256(), hashlib.sha256()
        total = mib * 1024 * 1024
        async def writer():
            left = total
            while left > 0:
                n = min(left, 1024 * 1024)
                chunk = rnd.randbytes(n)
                sent.update(chunk)
                await ws.send(chunk)
                left -= n
        w = asyncio.ensure_future(writer())
        received = 0
        while received < total:
            m = await ws.recv()
            got.update(m)
            received += len(m)
        await w
        out["sent_sha"], out["recv_sha"], out["bytes"] = sent.hexdigest(), got.hexdigest(), received
        await ws.close(1000, "done")
        out["close_code"] = ws.close_code
    print(json.dumps(out), flush=True)

async def server():
    async def echo(ws, path=None):
        try:
            await echo_loop(ws)
        except websockets.ConnectionClosed:
            pass                # a close code other than 1000: not a fault

    async def echo_loop(ws):
        h = hashlib.sha256()
        async for m in ws:
            if m == "fragment-me":
                await ws.send(["a", "b", "c"])
            elif m == "close-me":
                await ws.close(4001, "asked to")
                return
            elif m == "sha?":
                await ws.send(h.hexdigest())
            else:
                if isinstance(m, bytes):
                    h.update(m)
                await ws.send(m)
    async with websockets.serve(echo, "127.0.0.1", 0, subprotocols=["chat"],
                                max_size=None) as srv:
        port = srv.sockets[0].getsockname()[1]
        print(port, flush=True)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), 60)

async def bench(url, n, size):
    msg = b"x" * size
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        t = time.perf_counter()
        inflight = 8
        for _ in range(inflight):
            await ws.send(msg)
        for i in range(n):
            await ws.recv()
            if i + inflight < n:
                await ws.send(msg)
        print(time.perf_counter() - t, flush=True)

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "client":
        asyncio.run(client(sys.argv[2], int(sys.argv[3])))
    elif cmd == "server":
        try:
            asyncio.run(server())
        except asyncio.TimeoutError:
            pass
    elif cmd == "bench":
        asyncio.run(bench(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
