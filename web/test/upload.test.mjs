// Browser test: the real page (served by hoist-dev with the real handlers) in headless
// Chromium uploads a 30 MiB file through Uppy's Dashboard + @uppy/aws-s3 (Companion
// mode, cookie session), the file becomes ready (processed with clamd), and the bytes
// downloaded through a signed link equal the source. A screenshot is kept.
// Needs the local stack up and hoist-dev built (scripts/test.sh does both).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { artifacts, launch, startServer } from './helpers.mjs'

let server
let base
let browser

before(async () => {
  server = await startServer('hoist-dev-uppy6')
  base = server.base
  browser = await launch()
})

after(async () => {
  await browser?.close()
  server?.stop()
})

test('a 30 MiB file goes through Uppy to ready, and downloads byte for byte', { timeout: 240000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hoist-web-'))
  const source = join(dir, 'holiday-video.bin')
  const data = randomBytes(30 * 1024 * 1024 + 12345)
  writeFileSync(source, data)
  const sha = createHash('sha256').update(data).digest('hex')

  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 900 } })
  const page = await context.newPage()
  const companionCalls = []
  page.on('request', (r) => { if (r.url().includes('/s3/multipart')) companionCalls.push(`${r.method()} ${new URL(r.url()).pathname}`) })
  const owner = `web-${Date.now()}`
  await page.goto(`${base}/dev/login?owner=${owner}`)
  assert.equal(new URL(page.url()).pathname, '/')
  const cookies = await context.cookies()
  const session = cookies.find((c) => c.name === '__Host-hoist_session')
  assert.ok(session && session.httpOnly && session.secure && session.sameSite === 'Strict', '__Host-, Secure, HttpOnly, SameSite=Strict session cookie')

  await page.locator('input[type=file]').first().setInputFiles(source)
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
  await page.locator('.uppy-StatusBar.is-complete').waitFor({ timeout: 120000 })
  assert.ok(companionCalls.some((c) => c.startsWith('POST /s3/multipart')), `Companion routes used: ${companionCalls}`)
  assert.ok(companionCalls.some((c) => c.endsWith('/complete')), 'completed through the Companion route')

  const row = page.locator('#files tbody tr[data-status="ready"]', { hasText: 'holiday-video.bin' })
  await row.waitFor({ timeout: 90000 })
  mkdirSync(artifacts, { recursive: true })
  await page.screenshot({ path: join(artifacts, 'web-uploader.png'), fullPage: true })

  const [download] = await Promise.all([page.waitForEvent('download'), row.locator('button.download').click()])
  const got = readFileSync(await download.path())
  assert.equal(got.length, data.length)
  assert.equal(createHash('sha256').update(got).digest('hex'), sha, 'downloaded bytes equal the source')
  await context.close()
})

test('without a session the API refuses and the page says so', async () => {
  // API Gateway's answer when the authorizer refuses (what the dev server mirrors).
  const r = await fetch(`${base}/files`)
  assert.equal(r.status, 403)
  assert.deepEqual(await r.json(), { message: 'Forbidden' })
  const r2 = await fetch(`${base}/s3/multipart`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"filename":"a","type":"text/plain"}' })
  assert.equal(r2.status, 403)
})
