// The ceiling: node:http answering a fixed JSON body, the most any Node HTTP service can do
// on this machine with the same load settings.
import { createServer } from 'node:http';

const body = JSON.stringify({ state: 'claimed', amount: '1.23', seq: 1 });
const server = createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    response.end(body);
  });
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const address = server.address();
  console.log(`ceiling listening on ${typeof address === 'object' && address ? address.port : ''}`);
});
