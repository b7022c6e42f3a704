// A throw-away certificate authority and server certificate made with the openssl command, and an
// HTTPS server (node's https module) for a published update source, with the same static handler
// the HTTP test source uses.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { staticHandler, type RequestHandler } from '../../src-main/demo/static-server.js';

export interface TestCertificates {
  dir: string;
  /** The CA certificate (PEM): give it to clients, e.g. as NODE_EXTRA_CA_CERTS. */
  caFile: string;
  certFile: string;
  keyFile: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/** A CA and a server certificate for `names` (DNS names and IP literals), valid for two days. */
export function makeCertificates(dir: string, names: string[] = ['localhost', '127.0.0.1']): TestCertificates {
  fs.mkdirSync(dir, { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Bulwark Test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${names[0]}`], dir);
  const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  fs.writeFileSync(path.join(dir, 'server.ext'), [`subjectAltName=${san}`, 'basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth', ''].join('\n'));
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext'], dir);
  return { dir, caFile: path.join(dir, 'ca.pem'), certFile: path.join(dir, 'server.pem'), keyFile: path.join(dir, 'server.key') };
}

export interface RunningHttpsServer {
  url: string;
  server: https.Server;
  /** Paths requested, in order. */
  requests: string[];
  close(): Promise<void>;
}

/** Serve `root` (a published source's output) over HTTPS on `host`, any free port. */
export async function serveHttps(root: string, certs: TestCertificates, host = '127.0.0.1', urlHost = host): Promise<RunningHttpsServer> {
  const serveFile: RequestHandler = staticHandler(root);
  const requests: string[] = [];
  const server = https.createServer({ cert: fs.readFileSync(certs.certFile), key: fs.readFileSync(certs.keyFile) }, (req, res) => {
    requests.push(req.url ?? '');
    serveFile(req, res);
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://${urlHost.includes(':') ? `[${urlHost}]` : urlHost}:${port}/`,
    server,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
