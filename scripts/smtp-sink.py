#!/usr/bin/env python3
"""A plain SMTP receiver for the drills of scripts/faults.sh: accepts every message and
appends one line per message to FILE: its Message-ID, a tab, its recipients. Standard
library only (smtpd left Python in 3.12).

usage: smtp-sink.py PORT FILE
"""
import asyncio
import sys


async def session(reader, writer, out):
    def send(line):
        writer.write(line.encode() + b"\r\n")

    send("220 sink ESMTP")
    rcpts = []
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = line.decode(errors="replace").strip()
        upper = cmd.upper()
        if upper.startswith("EHLO"):
            writer.write(b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
        elif upper.startswith("HELO"):
            send("250 sink")
        elif upper.startswith("MAIL FROM:"):
            rcpts = []
            send("250 OK")
        elif upper.startswith("RCPT TO:"):
            rcpts.append(cmd[8:].strip().strip("<>"))
            send("250 OK")
        elif upper.startswith("DATA"):
            send("354 go ahead")
            await writer.drain()
            message_id = ""
            while True:
                data = await reader.readline()
                if not data or data == b".\r\n":
                    break
                if not message_id and data.lower().startswith(b"message-id:"):
                    message_id = data.split(b":", 1)[1].strip().decode(errors="replace")
            with open(out, "a") as f:
                f.write(f"{message_id}\t{','.join(rcpts)}\n")
            send("250 OK queued")
        elif upper.startswith("QUIT"):
            send("221 bye")
            await writer.drain()
            break
        else:
            send("250 OK")
        await writer.drain()
    writer.close()


async def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    server = await asyncio.start_server(lambda r, w: session(r, w, out), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
