#!/usr/bin/python3
"""bench/ws_python.py: the same WebSocket echo server on python3-websockets
(asyncio, no compression: as the uring server), for bench/ws.sh.
First line: "listening on 127.0.0.1:PORT"; serves until killed."""
import asyncio, sys
import websockets

async def echo(ws, path=None):
    try:
        async for m in ws:
            await ws.send(m)
    except websockets.ConnectionClosed:
        pass

async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0,
                                compression=None, max_size=64 << 20) as srv:
        print("listening on 127.0.0.1:%d" % srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
