"""Sends an exact number of requests, for work-per-request measurements (work.sh).

usage: drive.py PORT REQUESTS MODE CONNECTIONS
MODE is keepalive (one request at a time per connection) or pipelined (16 per write).
Each response is read in full (Content-Length framing) before the next write.
"""
import socket
import sys
import threading

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def read_responses(sock, count, buf):
    done = 0
    while done < count:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1").lower()
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name == "content-length":
                    length = int(value)
            total = end + 4 + length
            if len(buf) >= total:
                if not head.startswith("http/1.1 200"):
                    raise SystemExit("unexpected response: " + head.splitlines()[0])
                buf = buf[total:]
                done += 1
                continue
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("server closed the connection")
        buf += chunk
    return buf


def client(port, requests, depth):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    sent = 0
    while sent < requests:
        n = min(depth, requests - sent)
        sock.sendall(REQUEST * n)
        buf = read_responses(sock, n, buf)
        sent += n
    sock.close()


def main():
    port, requests, mode, connections = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    depth = 16 if mode == "pipelined" else 1
    per = requests // connections
    threads = [threading.Thread(target=client, args=(port, per, depth)) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


main()
