// A module resolution hook (node:module `register`) that reads the import maps out of the Django
// templates, so that the browser and Node resolve "cryptostock/..." to the same files and the
// mapping is written down once. An entry reads `"name": "{% static 'path' %}"`; a name the
// templates map to two different files is an error rather than a guess.
import { readFileSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const ENTRY = /"([^"\s]+)"\s*:\s*"\{%\s*static\s+'([^']+)'\s*%\}"/g;

function templates(folder) {
  return readdirSync(folder, { withFileTypes: true }).flatMap((entry) => {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) {
      return templates(path);
    }
    return entry.name.endsWith(".html") ? [path] : [];
  });
}

export function readImportMaps(root = ROOT) {
  const imports = new Map();
  for (const template of templates(join(root, "templates"))) {
    for (const [, name, staticPath] of readFileSync(template, "utf8").matchAll(ENTRY)) {
      const url = pathToFileURL(join(root, "static", staticPath)).href;
      const known = imports.get(name);
      if (known !== undefined && known.url !== url) {
        throw new Error(
          `import map name ${name} means ${known.url} in ${known.template} but ${url} in ${relative(root, template)}`,
        );
      }
      imports.set(name, { url, template: relative(root, template) });
    }
  }
  return imports;
}

const IMPORTS = readImportMaps();

export async function resolve(specifier, context, nextResolve) {
  const mapped = IMPORTS.get(specifier);
  if (mapped !== undefined) {
    return { url: mapped.url, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
