// A reload in the middle of an upload: Golden Retriever restores the file and its
// multipart state, Uppy asks the list-parts route what S3 already has, and only the
// missing part is signed and sent; the file still ends ready with the right bytes.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { launch, startServer } from './helpers.mjs'

let server
let browser

before(async () => {
  server = await startServer('hoist-dev-resume')
  browser = await launch()
})

after(async () => {
  await browser?.close()
  server?.stop()
})

test('a reload mid-upload resumes without re-sending finished parts', { timeout: 180000 }, async () => {
  // 2 parts of 5 MiB + 4 MiB; under Golden Retriever's 10 MiB IndexedDB limit.
  const data = randomBytes(9 * 1024 * 1024 + 5)
  const source = join(mkdtempSync(join(tmpdir(), 'hoist-gr-')), 'resume-me.bin')
  writeFileSync(source, data)
  const context = await browser.newContext()
  const page = await context.newPage()
  const puts = []
  const calls = []
  page.on('response', (r) => {
    if (r.request().method() === 'PUT') puts.push({ part: new URL(r.url()).searchParams.get('partNumber'), status: r.status() })
  })
  page.on('request', (r) => { if (r.url().includes('/s3/multipart')) calls.push(`${r.method()} ${new URL(r.url()).pathname}`) })
  await page.goto(`${server.base}/dev/login?owner=resume-${Date.now()}`)
  // A slow uplink, so the reload lands between the two parts.
  const cdp = await context.newCDPSession(page)
  await cdp.send('Network.enable')
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 1.5 * 1024 * 1024 })
  await page.locator('input[type=file]').first().setInputFiles(source)
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
  const t0 = Date.now()
  while (!puts.some((p) => p.part === '1' && p.status === 200)) {
    assert.ok(Date.now() - t0 < 60000, 'part 1 never finished')
    await page.waitForTimeout(50)
  }
  assert.ok(!puts.some((p) => p.part === '2' && p.status === 200), 'reloading before part 2 is done')
  // "GET /s3/multipart/<uploadId>/1" -> <uploadId>
  const uploadId = calls.map((c) => c.split('/')[3]).find(Boolean)

  await page.reload()
  puts.length = 0
  calls.length = 0
  await page.getByText('Session restored').waitFor({ timeout: 20000 })
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
  await page.locator('.uppy-StatusBar.is-complete').waitFor({ timeout: 60000 })

  assert.deepEqual(puts.map((p) => p.part), ['2'], `only the missing part was sent: ${JSON.stringify(puts)}`)
  assert.ok(calls.includes(`GET /s3/multipart/${uploadId}`), `asked what S3 has: ${calls}`)
  assert.ok(!calls.some((c) => c.endsWith(`/${uploadId}/1`)), `part 1 not signed again: ${calls}`)
  assert.ok(!calls.some((c) => c === 'POST /s3/multipart'), 'the same upload, not a new one')

  // And the file is whole.
  const files = await page.evaluate(async () => (await (await fetch('/files')).json()).files)
  const file = files.find((f) => f.filename === 'resume-me.bin')
  assert.equal(file?.id, uploadId)
  assert.equal(file.size, data.length)
  let status = file.status
  for (let i = 0; i < 60 && status !== 'ready'; i++) {
    await page.waitForTimeout(500)
    status = await page.evaluate(async (id) => (await (await fetch(`/files/${id}`)).json()).status, uploadId)
  }
  assert.equal(status, 'ready')
  const sha = await page.evaluate(async (id) => {
    const link = await (await fetch(`/files/${id}/links`, { method: 'POST' })).json()
    const bytes = await (await fetch(link.url)).arrayBuffer()
    return [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join('')
  }, uploadId)
  assert.equal(sha, createHash('sha256').update(data).digest('hex'))
  await context.close()
})
