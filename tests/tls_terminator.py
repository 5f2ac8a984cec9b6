"""A TLS terminator for the TLS tests: OpenSSL (Python's ssl module) on the server side, as OAP's
JDK or a proxy in front of it would be, requiring a client certificate signed by --client-ca and
forwarding the decrypted bytes to a plaintext collector.

It exists to show what rustls's own server cannot: that the agent presents an X.509 version 1
client certificate and an OpenSSL server accepts it. Prints `LISTENING <port>` once ready, then
`CLIENT version=<n> subject=<cn>` for each client certificate it verified.
"""

import argparse
import socket
import ssl
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, context, forward):
    try:
        tls = context.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError) as e:
        print(f"HANDSHAKE-FAILED {e}", flush=True)
        conn.close()
        return
    cert = tls.getpeercert()
    cn = dict(x[0] for x in cert.get("subject", ())).get("commonName", "")
    print(f"CLIENT version={cert.get('version')} subject={cn}", flush=True)
    host, port = forward.rsplit(":", 1)
    upstream = socket.create_connection((host, int(port)))
    threading.Thread(target=pump, args=(tls, upstream), daemon=True).start()
    pump(upstream, tls)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--client-ca", required=True)
    parser.add_argument("--forward", required=True)
    args = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.load_verify_locations(args.client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(f"LISTENING {listener.getsockname()[1]}", flush=True)
    # Ends with the test that started it: its standard input closes.
    def stop():
        sys.stdin.read()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()

    threading.Thread(target=stop, daemon=True).start()
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn, context, args.forward), daemon=True).start()


if __name__ == "__main__":
    main()
