// Node's side of the browser's import maps: `node --import ./jstests/register.mjs --test jstests/`
// lets the modules under test import each other by the names the pages use ("cryptostock/format"),
// resolved from the same import maps the templates give the browser (importmap-hooks.mjs).
import { register } from "node:module";

register("./importmap-hooks.mjs", import.meta.url);
