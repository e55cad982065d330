// Hoist's web uploader: Uppy's Dashboard with @uppy/aws-s3 in Companion mode, pointed at
// this API's own origin. Uppy 6 sends no custom headers in Companion mode, only
// same-origin cookies: the page is served by the API and authenticates with the
// `__Host-hoist_session` cookie (Secure, HttpOnly, SameSite=Strict).
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import AwsS3 from '@uppy/aws-s3'
import GoldenRetriever from '@uppy/golden-retriever'
import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'

const MiB = 1024 * 1024
const api = (path, opts = {}) => fetch(path, { credentials: 'same-origin', ...opts })

const uppyDefaults = new URLSearchParams(window.location.search).get('multipart') === 'uppy-default'

const uppy = new Uppy({ id: 'hoist', autoProceed: false })
  .use(Dashboard, {
    inline: true,
    target: '#uploader',
    height: 360,
    proudlyDisplayPoweredByUppy: false,
    showProgressDetails: true,
    note: 'Files go straight to storage in parallel parts; every upload is scanned before it can be downloaded.',
  })
  .use(AwsS3, {
    companionEndpoint: window.location.origin,
    // Every upload is multipart, so any upload resumes after a reload from the parts S3
    // already holds. `?multipart=uppy-default` keeps Uppy's own rule instead (one POST
    // form below 100 MiB, /s3/params): what any Uppy user with default options gets.
    ...(uppyDefaults ? {} : { shouldUseMultipart: true }),
    // Uppy 6.3 sends a file's parts one after another (transloadit/uppy#6547; the fix,
    // PR #6568, is not released): each part costs a signing round trip and a request, so
    // larger files get larger parts, up to 64 MiB (bench/browser_upload.md: 1 GiB in
    // 14.6 s with 5 MiB parts, 8.0 s with 64 MiB). Small files keep 5 MiB parts, so a
    // reload mid-upload loses at most one part (Golden Retriever restores files up to
    // 10 MiB); S3's 10,000-part limit is kept for any size.
    getChunkSize: (file) => Math.max(5 * MiB, Math.ceil(file.size / 10000), Math.min(64 * MiB, Math.ceil(file.size / 16))),
  })
  // Survives a reload or a crashed tab: restores the files (blobs up to 10 MiB are kept
  // in IndexedDB) and their multipart state; the upload resumes from S3's part list.
  .use(GoldenRetriever)

window.hoistUppy = uppy

function human (n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`
}

async function download (id) {
  const r = await api(`/files/${id}/links`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  const body = await r.json()
  if (!r.ok) { showError(body.detail || 'Could not create a link.'); return }
  window.location.href = body.url
}

function showError (msg) { document.getElementById('error').textContent = msg }

async function refresh () {
  const r = await api('/files?limit=50')
  // API Gateway answers 403 {"message":"Forbidden"} when the authorizer refuses the session.
  if (r.status === 401 || r.status === 403) { showError('Not signed in, or the session has expired: sign in again.'); return }
  if (!r.ok) { showError('Could not list your files; try again in a moment.'); return }
  const { files } = await r.json()
  const tbody = document.querySelector('#files tbody')
  tbody.replaceChildren(...files.map((f) => {
    const tr = document.createElement('tr')
    tr.dataset.id = f.id
    tr.dataset.status = f.status
    const thumb = document.createElement('td')
    thumb.className = 'thumb'
    if (f.thumbnail_url) { const img = document.createElement('img'); img.src = f.thumbnail_url; img.alt = ''; thumb.append(img) }
    const name = document.createElement('td')
    name.textContent = f.filename
    const size = document.createElement('td')
    size.textContent = human(f.size)
    const status = document.createElement('td')
    const s = document.createElement('span')
    s.className = `status ${f.status}`
    s.textContent = f.status
    status.append(s)
    if (f.status !== 'ready' && f.reason) { const why = document.createElement('div'); why.className = 'reason'; why.textContent = f.reason; status.append(why) }
    if (f.progress) {
      // A large file checked in windows: how far the scan and the whole-file hash are.
      const p = f.progress
      const pct = Math.round(100 * (p.bytes_scanned + p.bytes_hashed) / (2 * Math.max(p.bytes_total, 1)))
      const how = document.createElement('div')
      how.className = 'progress'
      how.textContent = `checking ${pct}% (${p.windows_scanned} of ${p.windows_total} windows scanned)`
      status.append(how)
    }
    const action = document.createElement('td')
    if (f.status === 'ready') {
      const b = document.createElement('button')
      b.className = 'download'
      b.textContent = 'Download'
      b.onclick = () => download(f.id)
      action.append(b)
    }
    tr.append(thumb, name, size, status, action)
    return tr
  }))
}

uppy.on('complete', () => refresh())
refresh()
setInterval(refresh, 3000)
