// Uppy 5, configured as any Uppy 5 user would against a Companion server (`endpoint`
// plus the bearer token in `headers`), uploads through the same routes; no cookie.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { artifacts, assertReadyWithBytes, launch, startServer, token } from './helpers.mjs'

let server
let browser

before(async () => {
  server = await startServer('hoist-dev-uppy5')
  browser = await launch()
})

after(async () => {
  await browser?.close()
  server?.stop()
})

test('Uppy 5 in header mode uploads through the Companion routes to a ready file', { timeout: 240000 }, async () => {
  const owner = `uppy5-${Date.now()}`
  const bearer = token(owner)
  const dir = mkdtempSync(join(tmpdir(), 'hoist-v5-'))
  const source = join(dir, 'report-v5.bin')
  const data = randomBytes(12 * 1024 * 1024 + 99)
  writeFileSync(source, data)

  const context = await browser.newContext()
  const page = await context.newPage()
  const calls = []
  page.on('request', (r) => {
    if (r.url().includes('/s3/multipart')) calls.push({ path: new URL(r.url()).pathname, auth: r.headers().authorization })
  })
  await page.goto(`${server.base}/v5/#token=${bearer}`)
  assert.equal((await context.cookies()).length, 0, 'no cookie in this mode')
  await page.locator('input[type=file]').first().setInputFiles(source)
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
  await page.locator('.uppy-StatusBar.is-complete').waitFor({ timeout: 120000 })
  await page.screenshot({ path: join(artifacts, 'web-uploader-uppy5.png') })
  assert.ok(calls.length >= 3, `Companion routes used: ${JSON.stringify(calls)}`)
  assert.ok(calls.every((c) => c.auth === `Bearer ${bearer}`), 'every call carried the bearer header')

  // The file is the owner's, and becomes ready with the same bytes.
  await assertReadyWithBytes(server.base, { authorization: `Bearer ${bearer}` }, 'report-v5.bin', data)
  await context.close()
})
