// Validate glTF/GLB files with the Khronos validator; prints one JSON report per file, one per line.
// usage: node tools/validate.js FILE [FILE ...]
const fs = require("fs");
const validator = require("gltf-validator");

async function main() {
  for (const path of process.argv.slice(2)) {
    const bytes = new Uint8Array(fs.readFileSync(path));
    const report = await validator.validateBytes(bytes, { maxIssues: 100 });
    const issues = report.issues;
    console.log(JSON.stringify({
      path,
      errors: issues.numErrors, warnings: issues.numWarnings, infos: issues.numInfos, hints: issues.numHints,
      messages: issues.messages.map((m) => ({ code: m.code, severity: m.severity, message: m.message, pointer: m.pointer })),
    }));
  }
}
main().catch((e) => { console.error(String(e)); process.exit(1); });
