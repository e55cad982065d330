// Uppy with its default options sends files under 100 MiB in one request: it asks
// GET /s3/params and POSTs the signed form straight to S3. No completion call follows;
// S3's ObjectCreated event completes the upload. Both Uppy majors, default options.
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
  server = await startServer('hoist-dev-single')
  browser = await launch()
})

after(async () => {
  await browser?.close()
  server?.stop()
})

/** Records what the page asked of our API and of S3. */
function watch (page) {
  const seen = { params: [], multipart: 0, s3Posts: [] }
  page.on('request', (r) => {
    const u = new URL(r.url())
    if (u.pathname === '/s3/params') seen.params.push({ query: u.search, auth: r.headers().authorization })
    if (u.pathname.startsWith('/s3/multipart')) seen.multipart++
    if (r.method() === 'POST' && u.port === '4566') seen.s3Posts.push(r.headers()['content-type'] || '')
  })
  return seen
}

function sourceFile (name, size) {
  const data = randomBytes(size)
  const path = join(mkdtempSync(join(tmpdir(), 'hoist-single-')), name)
  writeFileSync(path, data)
  return { data, path }
}

test('Uppy 6 with default options (cookie): one POST form to S3, then ready', { timeout: 180000 }, async () => {
  const owner = `single6-${Date.now()}`
  const { data, path } = sourceFile('small-v6.bin', 6 * 1024 * 1024 + 3)
  const context = await browser.newContext()
  const page = await context.newPage()
  const seen = watch(page)
  await page.goto(`${server.base}/dev/login?owner=${owner}`)
  await page.goto(`${server.base}/?multipart=uppy-default`)
  await page.locator('input[type=file]').first().setInputFiles(path)
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
  await page.locator('.uppy-StatusBar.is-complete').waitFor({ timeout: 60000 })
  await page.screenshot({ path: join(artifacts, 'web-uploader-single-v6.png') })
  assert.equal(seen.params.length, 1, JSON.stringify(seen))
  assert.match(seen.params[0].query, /filename=small-v6\.bin/)
  assert.equal(seen.multipart, 0, 'no multipart route was used')
  assert.equal(seen.s3Posts.length, 1, JSON.stringify(seen))
  assert.match(seen.s3Posts[0], /^multipart\/form-data/)
  await assertReadyWithBytes(server.base, { authorization: `Bearer ${token(owner)}` }, 'small-v6.bin', data)
  await context.close()
})

test('Uppy 5 with default options (bearer header): one POST form to S3, then ready', { timeout: 180000 }, async () => {
  const owner = `single5-${Date.now()}`
  const bearer = token(owner)
  const { data, path } = sourceFile('small-v5.bin', 3 * 1024 * 1024 + 7)
  const context = await browser.newContext()
  const page = await context.newPage()
  const seen = watch(page)
  await page.goto(`${server.base}/v5/?multipart=uppy-default#token=${bearer}`)
  await page.locator('input[type=file]').first().setInputFiles(path)
  await page.locator('.uppy-StatusBar-actionBtn--upload').click()
  await page.locator('.uppy-StatusBar.is-complete').waitFor({ timeout: 60000 })
  await page.screenshot({ path: join(artifacts, 'web-uploader-single-v5.png') })
  assert.equal(seen.params.length, 1, JSON.stringify(seen))
  assert.equal(seen.params[0].auth, `Bearer ${bearer}`)
  assert.equal(seen.multipart, 0, 'no multipart route was used')
  assert.equal(seen.s3Posts.length, 1, JSON.stringify(seen))
  await assertReadyWithBytes(server.base, { authorization: `Bearer ${bearer}` }, 'small-v5.bin', data)
  await context.close()
})
