// Shared by the browser tests: a hoist-dev server on a free port (the real handlers,
// routes from template.yaml, the built pages) and headless Debian Chromium.
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, openSync } from 'node:fs'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { chromium } from 'playwright-core'

export const root = resolve(import.meta.dirname, '..', '..')
export const artifacts = join(root, 'tests', 'artifacts')
const bin = join(process.env.CARGO_TARGET_DIR, 'debug', 'hoist-dev')

function freePort () {
  return new Promise((ok, fail) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)) })
    s.on('error', fail)
  })
}

async function waitFor (url, ms) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    try { if ((await fetch(url)).ok) return } catch {}
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`${url} did not come up`)
}

/**
 * Starts hoist-dev with a bucket and queue of its own (seeded by scripts/seed.py, so
 * wired as the template wires them: CORS, S3 events to the queue). Test files run in
 * parallel and each stops its server when done: on a shared queue one server could
 * take another's message with it. Its JSON logs go to tests/artifacts/<name>.log.
 */
export async function startServer (name) {
  const port = await freePort()
  mkdirSync(artifacts, { recursive: true })
  const log = openSync(join(artifacts, `${name}.log`), 'w')
  const suffix = `${name}-${process.pid}-${port}`.toLowerCase().replace(/[^a-z0-9-]/g, '-')
  const queue = `hoist-web-${suffix}`
  const env = {
    ...process.env,
    HOIST_BUCKET: `hoist-web-${suffix}`.slice(0, 63),
    HOIST_QUEUE_NAME: queue,
    HOIST_QUEUE_URL: `${process.env.AWS_ENDPOINT_URL_SQS}/queue/${process.env.AWS_REGION}/000000000000/${queue}`,
  }
  execFileSync(process.env.HOIST_BOTO_PYTHON, [join(root, 'scripts', 'seed.py')], { env, stdio: ['ignore', log, log] })
  const server = spawn(bin, ['serve', '--port', String(port), '--template', join(root, 'template.yaml'), '--web-dir', join(root, 'web', 'dist')], {
    stdio: ['ignore', log, log],
    env,
  })
  const base = `http://127.0.0.1:${port}`
  await waitFor(`${base}/`, 30000)
  return { base, stop: () => server.kill('SIGTERM') }
}

export function launch () {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  })
}

/** A dev bearer token for `owner` (hoist-dev token). */
export function token (owner) {
  return execFileSync(bin, ['token', owner]).toString().trim()
}

export const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex')

/** Waits until the owner's file `name` is ready, then checks its bytes through a signed link. */
export async function assertReadyWithBytes (base, auth, name, data) {
  let file
  for (let i = 0; i < 120; i++) {
    const list = await (await fetch(`${base}/files`, { headers: auth })).json()
    file = list.files.find((f) => f.filename === name)
    if (file?.status === 'ready') break
    await new Promise((r) => setTimeout(r, 500))
  }
  assert.equal(file?.status, 'ready', JSON.stringify(file))
  assert.equal(file.size, data.length)
  const link = await (await fetch(`${base}/files/${file.id}/links`, { method: 'POST', headers: auth })).json()
  const got = Buffer.from(await (await fetch(link.url)).arrayBuffer())
  assert.equal(sha256(got), sha256(data), 'downloaded bytes equal the source')
  return file
}
