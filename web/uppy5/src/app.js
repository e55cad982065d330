// Uppy 5 as any Uppy 5 user would configure it against a Companion server: the
// `endpoint` option, and the bearer token sent in a header (`headers` option).
import Uppy from '@uppy/core'
import Dashboard from '@uppy/dashboard'
import AwsS3 from '@uppy/aws-s3'
import '@uppy/core/css/style.min.css'
import '@uppy/dashboard/css/style.min.css'

const token = new URLSearchParams(window.location.hash.slice(1)).get('token') || ''
// `?multipart=uppy-default`: Uppy's own rule (one POST form below 100 MiB, /s3/params).
const uppyDefaults = new URLSearchParams(window.location.search).get('multipart') === 'uppy-default'
const uppy = new Uppy({ id: 'hoist-v5' })
  .use(Dashboard, { inline: true, target: '#uploader', height: 320, proudlyDisplayPoweredByUppy: false })
  .use(AwsS3, {
    endpoint: window.location.origin,
    headers: { authorization: `Bearer ${token}` },
    ...(uppyDefaults ? {} : { shouldUseMultipart: true }),
  })
window.hoistUppy = uppy
