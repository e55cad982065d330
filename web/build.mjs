// Bundles a page into dist/ with esbuild: no network needed at run time.
//   node build.mjs          -> the main page (src/) into dist/
//   node build.mjs uppy5    -> the Uppy 5 compatibility page (uppy5/src/) into dist/v5/
import { build } from 'esbuild'
import { copyFile, mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const variant = process.argv[2]
const src = variant === 'uppy5' ? join(here, 'uppy5', 'src') : join(here, 'src')
const out = variant === 'uppy5' ? join(here, 'dist', 'v5') : join(here, 'dist')

await mkdir(out, { recursive: true })
await build({
  entryPoints: [join(src, 'app.js')],
  // Resolve packages from the page's own node_modules (Uppy majors differ per page).
  absWorkingDir: dirname(src),
  nodePaths: [join(dirname(src), 'node_modules')],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'esm',
  target: ['chrome120', 'firefox120', 'safari17'],
  outdir: out,
  loader: { '.css': 'css' },
  logLevel: 'warning',
})
await copyFile(join(src, 'index.html'), join(out, 'index.html'))
console.log(`web: built ${out}`)
