#!/usr/bin/env node
// Summarises what workers/heap-sampler.mjs wrote in a dev run (see there for the options):
//   node apps/bench/src/heap-summary.mjs <file>.heapsnapshot   live objects: the biggest groups by
//       their own size, and the biggest objects by what they keep alive (retained size, from the
//       dominator tree) with the chain of objects that owns each
//   node apps/bench/src/heap-summary.mjs <file>.heapprofile    allocations (garbage included), by
//       function and by file
// Plain text on stdout, for the bench README.
import { readFileSync } from 'node:fs';

const MB = (n) => (n / 1024 / 1024).toFixed(1);
const file = process.argv[2];
if (!file) {
  console.error('usage: heap-summary.mjs <file.heapsnapshot | file.heapprofile> [top N]');
  process.exit(2);
}
const top = Number(process.argv[3] ?? 25);
const data = JSON.parse(readFileSync(file, 'utf8'));
if (data.snapshot) summariseSnapshot(data);
else if (data.head) summariseProfile(data.head);
else throw new Error(`${file}: neither a heap snapshot nor a sampling heap profile`);

function summariseProfile(head) {
  const byFunction = new Map();
  const byFile = new Map();
  let total = 0;
  const walk = (node) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const short = url
      .replace(/^.*\/node_modules\/\.pnpm\/[^/]+\/node_modules\//, '')
      .replace(/^.*\/(apps|packages|connectors)\//, '$1/');
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
