// Bundles the page into dist/ with esbuild: no network needed at run time.
import { build } from 'esbuild'
import { copyFile, mkdir } from 'node:fs/promises'

await mkdir('dist', { recursive: true })
await build({
  entryPoints: ['src/app.js'],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'esm',
  target: ['chrome120', 'firefox120', 'safari17'],
  outdir: 'dist',
  loader: { '.css': 'css' },
  logLevel: 'warning',
})
await copyFile('src/index.html', 'dist/index.html')
console.log('web: built dist/')
