#!/usr/bin/env node
// Summarises what workers/heap-sampler.mjs (or NANOSYNC_BENCH_CPU_PROF) wrote in a dev run:
//   node apps/bench/src/heap-summary.mjs <file>.heapsnapshot   live objects: the biggest groups by
//       their own size, and the biggest objects by what they keep alive (retained size, from the
//       dominator tree) with the chain of objects that owns each
//   node apps/bench/src/heap-summary.mjs <file>.heapprofile    allocations (garbage included), by
//       function and by file
//   node apps/bench/src/heap-summary.mjs <file>.cpuprofile [top N] [from s]   CPU time (`--cpu-prof`),
//       skipping the first `from` seconds (start-up): self time by function, by file and by package,
//       and inclusive time (the function or file anywhere on the stack) by function and by file
//   node apps/bench/src/heap-summary.mjs <file>.smaps          resident memory by kind of mapping
//       (malloc's heaps, the Node binary, libraries, V8's heap pages and other anonymous memory)
// Plain text on stdout, for the bench README.
import { readFileSync } from 'node:fs';

const MB = (n) => (n / 1024 / 1024).toFixed(1);
const file = process.argv[2];
if (!file) {
  console.error(
    'usage: heap-summary.mjs <file.heapsnapshot | file.heapprofile | file.cpuprofile | file.smaps> [top N] [from s]',
  );
  process.exit(2);
}
const top = Number(process.argv[3] ?? 25);
if (file.endsWith('.smaps')) summariseSmaps(readFileSync(file, 'utf8'));
else {
  const data = JSON.parse(readFileSync(file, 'utf8'));
  if (data.snapshot) summariseSnapshot(data);
  else if (data.nodes && data.samples) summariseCpuProfile(data, Number(process.argv[4] ?? 0));
  else if (data.head) summariseProfile(data.head);
  else throw new Error(`${file}: neither a heap snapshot, a sampling heap profile, a CPU profile nor an smaps copy`);
}

/**
 * Resident memory by kind of mapping: glibc's main malloc heap (`[heap]`, brk), malloc's
 * other arenas (a read-write mapping followed by its unused reserve, 64 MiB together), the
 * Node binary, other files (libraries, ICU data), stacks, and the remaining anonymous
 * mappings: V8's heap pages (256 KiB each, larger for big objects and code), big malloc
 * blocks that got their own mmap (Buffers over the mmap threshold) and thread stacks.
 */
function summariseSmaps(text) {
  const maps = [];
  let current;
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      current = {
        start: Number.parseInt(head[1], 16),
        end: Number.parseInt(head[2], 16),
        perms: head[3],
        path: head[4].trim(),
        rss: 0,
      };
      maps.push(current);
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && current) current.rss = Number(rss[1]) * 1024;
  }
  const groups = new Map();
  const add = (name, m) => {
    const g = groups.get(name) ?? { rss: 0, count: 0 };
    g.rss += m.rss;
    g.count += 1;
    groups.set(name, g);
  };
  const anonymous = [];
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i];
    const next = maps[i + 1];
    if (m.path === '[heap]') add('malloc main heap ([heap], brk)', m);
    else if (m.path.startsWith('[stack')) add('main stack', m);
    else if (m.path.startsWith('[')) add(`kernel ${m.path}`, m);
    else if (/\/node$/.test(m.path)) add('Node binary', m);
    else if (m.path) add('other files (libraries, data)', m);
    else if (
      m.perms.startsWith('rw') &&
      next !== undefined &&
      next.path === '' &&
      next.perms.startsWith('---') &&
      next.start === m.end &&
      next.end - m.start === 64 * 1024 * 1024
    )
      add('malloc arenas of other threads', m);
    else {
      add('other anonymous (V8 heap pages, mmapped malloc blocks, thread stacks)', m);
      anonymous.push(m);
    }
  }
  const total = [...groups.values()].reduce((sum, g) => sum + g.rss, 0);
  console.log(`resident: ${MB(total)} MB`);
  for (const [name, g] of [...groups].sort((a, b) => b[1].rss - a[1].rss))
    console.log(`${MB(g.rss).padStart(9)} MB ${String(g.count).padStart(5)} mappings  ${name}`);
  const bySize = new Map();
  for (const m of anonymous) {
    const size = m.end - m.start;
    const key =
      size === 256 * 1024
        ? '256 KiB (V8 page)'
        : size < 1024 * 1024
          ? '< 1 MiB'
          : size < 16 * 1024 * 1024
            ? '1–16 MiB'
            : '>= 16 MiB';
    const g = bySize.get(key) ?? { rss: 0, count: 0 };
    g.rss += m.rss;
    g.count += 1;
    bySize.set(key, g);
  }
  console.log('\nother anonymous, by mapping size:');
  for (const [key, g] of [...bySize].sort((a, b) => b[1].rss - a[1].rss))
    console.log(`${MB(g.rss).padStart(9)} MB ${String(g.count).padStart(5)} mappings  ${key}`);
}

/** A script's URL without the checkout's or pnpm's prefix: `packages/core/src/…`, `pg/lib/…`. */
function shortUrl(url) {
  return url
    .replace(/^.*\/node_modules\/\.pnpm\/[^/]+\/node_modules\//, '')
    .replace(/^.*\/(apps|packages|connectors)\//, '$1/');
}

/** What a short URL belongs to: the workspace package (`connectors/sink-kafka`), the npm package or `node:…`. */
function packageOf(short) {
  if (!short) return '(native)';
  const workspace = /^(apps|packages|connectors)\/[^/]+/.exec(short);
  if (workspace) return workspace[0];
  if (short.startsWith('node:')) return short.replace(/^(node:[^/]+).*$/, '$1');
  const scoped = /^(@[^/]+\/[^/]+|[^/]+)\//.exec(short);
  return scoped ? scoped[1] : short;
}

function summariseCpuProfile({ nodes, samples, timeDeltas }, fromSeconds) {
  const byId = new Map();
  const parent = new Map();
  for (const node of nodes) byId.set(node.id, node);
  for (const node of nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const keyOf = (node) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const short = shortUrl(url);
    return short ? `${functionName || '(anonymous)'} ${short}:${lineNumber + 1}` : functionName || '(anonymous)';
  };
  const fileOf = (node) => shortUrl(node.callFrame.url) || `(${node.callFrame.functionName || 'native'})`;
  // The distinct functions and files on the stack of each sampled node (its own first).
  const stackCache = new Map();
  const stackOf = (id) => {
    let stack = stackCache.get(id);
    if (!stack) {
      const functions = new Set();
      const files = new Set();
      for (let n = id; n !== undefined; n = parent.get(n)) {
        const node = byId.get(n);
        if (node.callFrame.functionName === '(root)') break;
        functions.add(keyOf(node));
        files.add(fileOf(node));
      }
      stack = { functions, files };
      stackCache.set(id, stack);
    }
    return stack;
  };
  const add = (map, key, us) => map.set(key, (map.get(key) ?? 0) + us);
  const self = new Map();
  const selfFile = new Map();
  const selfPackage = new Map();
  const inclusive = new Map();
  const inclusiveFile = new Map();
  let elapsed = 0;
  let busy = 0;
  let idle = 0;
  for (let i = 0; i < samples.length; i++) {
    // A sample stands for the time until the next one (as DevTools counts it).
    const us = timeDeltas[i + 1] ?? 0;
    elapsed += timeDeltas[i] ?? 0;
    if (elapsed < fromSeconds * 1e6 || us <= 0) continue;
    const node = byId.get(samples[i]);
    const name = node.callFrame.functionName;
    if (name === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    add(self, keyOf(node), us);
    add(selfFile, fileOf(node), us);
    add(selfPackage, name.startsWith('(') && !node.callFrame.url ? name : packageOf(fileOf(node)), us);
    const stack = stackOf(node.id);
    for (const key of stack.functions) add(inclusive, key, us);
    for (const key of stack.files) add(inclusiveFile, key, us);
  }
  const s = (us) => (us / 1e6).toFixed(2);
  console.log(
    `CPU profile from ${fromSeconds} s: ${s(busy)} s busy, ${s(idle)} s idle (percentages are of the busy time)`,
  );
  for (const [title, map] of [
    ['self time by function', self],
    ['self time by file', selfFile],
    ['self time by package', selfPackage],
    ['inclusive time by function', inclusive],
    ['inclusive time by file', inclusiveFile],
  ]) {
    console.log(`\n${title}:`);
    for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top))
      console.log(`${s(us).padStart(8)} s ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${key}`);
  }
}

function summariseProfile(head) {
  const byFunction = new Map();
  const byFile = new Map();
  let total = 0;
  const walk = (node) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const short = shortUrl(url);
    if (node.selfSize > 0) {
      total += node.selfSize;
      const key = `${functionName || '(anonymous)'} ${short}:${lineNumber + 1}`;
      byFunction.set(key, (byFunction.get(key) ?? 0) + node.selfSize);
      byFile.set(short || '(native)', (byFile.get(short || '(native)') ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child);
  };
  walk(head);
  console.log(`allocated in the sampled interval: ${MB(total)} MB (sampled)`);
  for (const [title, map] of [
    ['by function', byFunction],
    ['by file', byFile],
  ]) {
    console.log(`\n${title}:`);
    for (const [key, size] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top))
      console.log(`${MB(size).padStart(9)} MB ${((100 * size) / total).toFixed(1).padStart(5)}%  ${key}`);
  }
}

function summariseSnapshot({ snapshot, nodes, edges, strings }) {
  const nf = snapshot.meta.node_fields;
  const ef = snapshot.meta.edge_fields;
  const nodeTypes = snapshot.meta.node_types[0];
  const edgeTypes = snapshot.meta.edge_types[0];
  const N = nf.length;
  const E = ef.length;
  const [fType, fName, fSelf, fEdges] = ['type', 'name', 'self_size', 'edge_count'].map((f) => nf.indexOf(f));
  const [eType, eTo] = ['type', 'to_node'].map((f) => ef.indexOf(f));
  const weak = edgeTypes.indexOf('weak');
  const count = nodes.length / N;
  const firstEdge = new Uint32Array(count + 1);
  for (let i = 0, e = 0; i < count; i++) {
    firstEdge[i] = e;
    e += nodes[i * N + fEdges] * E;
    firstEdge[i + 1] = e;
  }
  const label = (i) => {
    const type = nodeTypes[nodes[i * N + fType]];
    const name = strings[nodes[i * N + fName]];
    return type === 'object' || type === 'closure' || type === 'native' || type === 'hidden'
      ? `${name.slice(0, 60)}${type === 'object' ? '' : ` (${type})`}`
      : `(${type})`;
  };

  // Post-order from the root over strong edges, then dominators (Cooper, Harvey, Kennedy).
  const order = new Int32Array(count).fill(-1);
  const post = new Uint32Array(count);
  let visited = 0;
  const stack = [0];
  const cursor = new Uint32Array(count);
  const seen = new Uint8Array(count);
  seen[0] = 1;
  for (let i = 0; i < count; i++) cursor[i] = firstEdge[i];
  while (stack.length > 0) {
    const n = stack[stack.length - 1];
    let pushed = false;
    while (cursor[n] < firstEdge[n + 1]) {
      const e = cursor[n];
      cursor[n] += E;
      if (edges[e + eType] === weak) continue;
      const to = edges[e + eTo] / N;
      if (!seen[to]) {
        seen[to] = 1;
        stack.push(to);
        pushed = true;
        break;
      }
    }
    if (!pushed) {
      stack.pop();
      order[n] = visited;
      post[visited++] = n;
    }
  }
  const predStart = new Uint32Array(count + 1);
  for (let n = 0; n < count; n++) {
    if (order[n] < 0) continue;
    for (let e = firstEdge[n]; e < firstEdge[n + 1]; e += E)
      if (edges[e + eType] !== weak) predStart[edges[e + eTo] / N + 1]++;
  }
  for (let i = 0; i < count; i++) predStart[i + 1] += predStart[i];
  const preds = new Uint32Array(predStart[count]);
  const fill = predStart.slice(0, count);
  for (let n = 0; n < count; n++) {
    if (order[n] < 0) continue;
    for (let e = firstEdge[n]; e < firstEdge[n + 1]; e += E)
      if (edges[e + eType] !== weak) preds[fill[edges[e + eTo] / N]++] = n;
  }
  const idom = new Int32Array(count).fill(-1);
  idom[0] = 0;
  const intersect = (a, b) => {
    while (a !== b) {
      while (order[a] < order[b]) a = idom[a];
      while (order[b] < order[a]) b = idom[b];
    }
    return a;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (let k = visited - 2; k >= 0; k--) {
      const n = post[k];
      let dom = -1;
      for (let p = predStart[n]; p < predStart[n + 1]; p++) {
        const pred = preds[p];
        if (order[pred] < 0 || idom[pred] < 0) continue;
        dom = dom < 0 ? pred : intersect(pred, dom);
      }
      if (dom >= 0 && idom[n] !== dom) {
        idom[n] = dom;
        changed = true;
      }
    }
  }
  const retained = new Float64Array(count);
  let total = 0;
  for (let k = 0; k < visited; k++) {
    const n = post[k];
    retained[n] += nodes[n * N + fSelf];
    total += nodes[n * N + fSelf];
    if (n !== 0) retained[idom[n]] += retained[n];
  }

  const groups = new Map();
  for (let k = 0; k < visited; k++) {
    const n = post[k];
    const key = label(n);
    const g = groups.get(key) ?? { count: 0, self: 0 };
    g.count++;
    g.self += nodes[n * N + fSelf];
    groups.set(key, g);
  }
  console.log(`live objects: ${visited.toLocaleString('en-US')}, ${MB(total)} MB (own sizes)`);
  console.log('\nlargest groups by own size:');
  for (const [key, g] of [...groups].sort((a, b) => b[1].self - a[1].self).slice(0, top))
    console.log(`${MB(g.self).padStart(8)} MB ${String(g.count).padStart(9)}×  ${key}`);

  // The biggest retainers that are not (synthetic) roots, skipping an object that only
  // repeats its owner's figure (an owner whose retained size is nearly all this one's).
  const candidates = [];
  for (let k = 0; k < visited; k++) {
    const n = post[k];
    if (n === 0 || nodeTypes[nodes[n * N + fType]] === 'synthetic') continue;
    if (retained[n] < 256 * 1024) continue;
    candidates.push(n);
  }
  candidates.sort((a, b) => retained[b] - retained[a]);
  console.log('\nlargest retainers (retained MB, owner chain from the root):');
  let shown = 0;
  for (const n of candidates) {
    const owner = idom[n];
    const ownerRetained = retained[owner];
    const child = candidates.find((c) => idom[c] === n && retained[c] > 0.9 * retained[n]);
    if (child !== undefined) continue; // a child says the same, more precisely
    if (nodeTypes[nodes[owner * N + fType]] !== 'synthetic' && retained[n] > 0.97 * ownerRetained && shown > 0)
      continue;
    const chain = [];
    for (let c = owner; c !== 0 && chain.length < 8; c = idom[c])
      if (nodeTypes[nodes[c * N + fType]] !== 'synthetic') chain.push(label(c));
    console.log(`${MB(retained[n]).padStart(8)} MB  ${label(n)}  ← ${chain.join(' ← ')}`);
    if (++shown >= top) break;
  }
}
