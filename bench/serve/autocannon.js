// The independent load generator of bench/serve/load.sh: autocannon (npm, installed by load.sh into the git-ignored
// bench/serve/.autocannon, found through NODE_PATH) posting one fixed body, checked beforehand by ServeLoad --write,
// with --connections keep-alive connections: a warm-up run, then the measured run. Counts only 2xx answers as done.
// Prints one line of JSON with the keys ServeLoad prints (requests_per_s, songs_per_s, p50_ms, p99_ms, errors, ...).
// Args: URL BODYFILE CONTENTTYPE HEADERLENGTH(- for none) CONNECTIONS WARMUP_S SECONDS ROWS SERVERPID PROTOCOL
'use strict';
const fs = require('fs');
const autocannon = require('autocannon');

const [url, bodyFile, contentType, headerLength, connections, warmup, seconds, rows, pid, protocol] = process.argv.slice(2);
const body = fs.readFileSync(bodyFile);
const headers = { 'content-type': contentType };
if (headerLength !== '-') headers['inference-header-content-length'] = headerLength;
const options = { url, method: 'POST', headers, body, connections: Number(connections), pipelining: 1, timeout: 30 };

// User and system CPU seconds of the server so far (/proc/PID/stat fields 14 and 15, USER_HZ 100).
function serverCpu() {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

(async () => {
  if (Number(warmup) > 0) await autocannon({ ...options, duration: Number(warmup) });
  const cpu0 = serverCpu();
  const own0 = process.cpuUsage();
  const result = await autocannon({ ...options, duration: Number(seconds) });
  const cpu = serverCpu() - cpu0;
  const own = process.cpuUsage(own0);
  const done = result['2xx'];
  const round = (x, d) => Math.round(x * 10 ** d) / 10 ** d;
  console.log(JSON.stringify({
    generator: 'autocannon',
    protocol,
    url,
    clients: Number(connections),
    rows: Number(rows),
    seconds: round(result.duration, 3),
    requests: done,
    requests_per_s: round(done / result.duration, 1),
    songs_per_s: round(done * Number(rows) / result.duration, 1),
    p50_ms: result.latency.p50,
    p99_ms: result.latency.p99,
    max_ms: result.latency.max,
    errors: result.errors + result.non2xx, // errors include the timeouts
    server_cpu_ms_per_request: done > 0 ? round(cpu * 1000 / done, 3) : null,
    server_cores_busy: round(cpu / result.duration, 2),
    client_cores_busy: round((own.user + own.system) / 1e6 / result.duration, 2),
  }));
  process.exit(result.errors + result.non2xx === 0 && done > 0 ? 0 : 1);
})().catch(e => { console.error(`autocannon.js: ${e.message}`); process.exit(1); });
