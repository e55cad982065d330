// The browser path (bench/browser_upload.md): one file (HOIST_BENCH_MIB, default 1024 MiB
// of random bytes) uploaded through the web page in headless Chromium, and by `hoist put`,
// on the same stack (a hoist-dev server started as the browser tests start it, LocalStack,
// moto). RUNS rounds (default 5) in rotating order; between runs the file's processing has
// finished and its object is deleted. For the pages it counts S3 part PUTs in flight
// (largest, and averaged over the upload's time). Prints Markdown.
//
// Variants: the pages as shipped (Uppy 6 at /, Uppy 5 at /v5/), and Uppy 6 with larger
// parts set through the plugin's own options (what the page's defaults could be).
// Run: `make bench` (needs the local stack, hoist-dev debug and hoist release built).
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, openSync, writeSync, closeSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { launch, startServer, token } from './test/helpers.mjs'

const MiB = 1024 * 1024
const SIZE_MIB = Number(process.env.HOIST_BENCH_MIB || 1024)
const RUNS = Number(process.env.RUNS || 5)
const hoist = join(process.env.CARGO_TARGET_DIR, 'release', 'hoist')

const variants = [
  { name: `page (Uppy 6.3), as shipped (parts up to 64 MiB: ${Math.max(5, Math.min(64, SIZE_MIB / 16))} MiB here)`, path: '/' },
  { name: 'Uppy 6.3, 5 MiB parts (the page before: max(5 MiB, size / 10,000))', path: '/', partMiB: 5 },
  { name: 'Uppy 6.3, 16 MiB parts', path: '/', partMiB: 16 },
  { name: 'page at /v5/ (Uppy 5), as shipped', path: '/v5/' },
  { name: '`hoist put` (16 MiB parts, 8 in flight)', cli: true },
]

const dir = mkdtempSync(join(tmpdir(), 'hoist-browser-bench-'))
const source = join(dir, 'video-take-3.mov')
const fd = openSync(source, 'w')
for (let i = 0; i < SIZE_MIB; i++) writeSync(fd, randomBytes(MiB))
closeSync(fd)

const server = await startServer('hoist-dev-bench')
const browser = await launch()
const owner = `browser-bench-${process.pid}`
const bearer = token(owner)
const auth = { authorization: `Bearer ${bearer}` }
const bucket = `hoist-web-hoist-dev-bench-${process.pid}-${new URL(server.base).port}`.slice(0, 63)

async function waitProcessed () {
  for (let i = 0; i < 1200; i++) {
    const list = await (await fetch(`${server.base}/files?limit=50`, { headers: auth })).json()
    const busy = (list.files || []).some((f) => f.status === 'processing')
    const open = await (await fetch(`${server.base}/uploads`, { headers: auth })).json()
    if (!busy && !(open.uploads || []).some((u) => u.status === 'completing' || u.status === 'processing')) return
    await new Promise((r) => setTimeout(r, 500))
  }
  throw new Error('processing did not finish')
}

/** Deletes every object version in the server's bucket (the runs would fill the disk). */
function emptyBucket () {
  const py = `import boto3,os
s3=boto3.client('s3',endpoint_url=os.environ['AWS_ENDPOINT_URL_S3'])
for page in s3.get_paginator('list_object_versions').paginate(Bucket='${bucket}'):
    for v in page.get('Versions',[])+page.get('DeleteMarkers',[]):
        s3.delete_object(Bucket='${bucket}',Key=v['Key'],VersionId=v['VersionId'])`
  execFileSync(process.env.HOIST_BOTO_PYTHON, ['-c', py])
}

async function runPage (v) {
  const context = await browser.newContext()
  const page = await context.newPage()
  const s3Origin = new URL(process.env.AWS_ENDPOINT_URL_S3).origin
  let inFlight = 0
  let peak = 0
  let weighted = 0
  let last = 0
  let started = 0
  const tick = () => { const now = Date.now(); if (started) weighted += inFlight * (now - last); last = now }
  const isPart = (r) => r.method() === 'PUT' && r.url().startsWith(s3Origin) && r.url().includes('partNumber=')
  page.on('request', (r) => { if (isPart(r)) { tick(); inFlight++; peak = Math.max(peak, inFlight) } })
  const done = (r) => { if (isPart(r)) { tick(); inFlight-- } }
  page.on('requestfinished', done)
  page.on('requestfailed', done)
  if (v.path === '/') await page.goto(`${server.base}/dev/login?owner=${owner}`)
  else await page.goto(`${server.base}/v5/#token=${bearer}`)
  if (v.partMiB) {
    await page.evaluate((mib) => {
      window.hoistUppy.getPlugin('AwsS3').setOptions({ getChunkSize: () => mib * 1024 * 1024 })
    }, v.partMiB)
  }
  await page.locator('input[type=file]').first().setInputFiles(source)
  started = Date.now()
  last = started
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
  await page.locator('.uppy-StatusBar.is-complete').waitFor({ timeout: 1800000 })
  const seconds = (Date.now() - started) / 1000
  tick()
  await context.close()
  return { seconds, peak, mean: weighted / (seconds * 1000) }
}

function runCli () {
  const started = Date.now()
  const r = spawnSync(hoist, ['--json', 'put', '-j', '8', '--part-size', String(16 * MiB), source], {
    env: { ...process.env, HOIST_URL: server.base, HOIST_TOKEN: bearer, HOIST_STATE_DIR: join(dir, 'state') },
    encoding: 'utf8',
  })
  if (r.status !== 0) throw new Error(`hoist put: ${r.stderr}`)
  return { seconds: (Date.now() - started) / 1000, peak: 8, mean: null }
}

const results = variants.map(() => [])
try {
  for (let round = 0; round < RUNS; round++) {
    for (let k = 0; k < variants.length; k++) {
      const i = (round + k) % variants.length
      const v = variants[i]
      const r = v.cli ? runCli() : await runPage(v)
      results[i].push(r)
      process.stderr.write(`round ${round + 1}: ${v.name} ${r.seconds.toFixed(2)} s, peak ${r.peak} in flight\n`)
      await waitProcessed()
      emptyBucket()
    }
  }
} finally {
  await browser.close()
  server.stop()
  rmSync(dir, { recursive: true, force: true })
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
console.log(`## The browser path: ${SIZE_MIB} MiB through the web page (headless Chromium) and through the CLI\n`)
console.log(`${RUNS} rounds in rotating order on the same stack (hoist-dev as the browser tests run it, LocalStack, moto); processing finished and the object deleted between runs. Time from the Upload click to Uppy's "complete" (the CLI: the whole command).\n`)
console.log('| variant | runs (s) | median s | min–max s | MiB/s (median) | S3 part PUTs in flight: peak, mean |')
console.log('|---|---|---|---|---|---|')
variants.forEach((v, i) => {
  const secs = results[i].map((r) => r.seconds)
  const med = median(secs)
  const flight = v.cli ? '8 (by construction)' : `${Math.max(...results[i].map((r) => r.peak))}, ${median(results[i].map((r) => r.mean)).toFixed(1)}`
  console.log(`| ${v.name} | ${secs.map((s) => s.toFixed(2)).join(', ')} | **${med.toFixed(2)}** | ${Math.min(...secs).toFixed(2)}–${Math.max(...secs).toFixed(2)} | ${(SIZE_MIB / med).toFixed(0)} | ${flight} |`)
})
console.log(`\nmachine: ${(await import('node:os')).cpus().length} cores, ${process.arch}, ${new Date().toISOString().slice(0, 10)}; Chromium, LocalStack, moto, clamd and the dev server share the cores`)
