// SPDX-License-Identifier: Apache-2.0
//
// Validates Kubernetes manifests offline against the API schemas, as the
// kubernetes-models package ships them (generated from the Kubernetes
// OpenAPI): types, required fields, enums and formats through its
// validators, and, since those let unknown fields pass, every field name
// against the model's declared properties (read from its .d.ts files).
//
//   node validate.mjs FILE...            one line per object, "ok" or errors
//   node validate.mjs --config DIR FILE...
//                                        also writes each ConfigMap's
//                                        fedguardd.yaml to DIR/NAME.yaml
//
// Exit 0 when every object is valid, 1 when one is not, 2 on a usage error.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, basename } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseAllDocuments } from "yaml";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "package.json"));
const modelsDir = dirname(require.resolve("kubernetes-models/package.json"));

// The model of apiVersion/kind: kubernetes-models/GROUP/VERSION/KIND.js.
function modelPath(apiVersion, kind) {
	const parts = String(apiVersion).split("/");
	const dir = parts.length === 1 ? join(modelsDir, parts[0]) : join(modelsDir, parts[0], parts[1]);
	return join(dir, `${kind}.js`);
}

// --- field names, from the .d.ts of each model ---------------------------------------------

const interfaces = new Map(); // .d.ts path -> { props: Map(name -> {ref, file}) } | null

function resolveImport(fromFile, spec) {
	if (spec.startsWith(".")) return join(dirname(fromFile), spec.replace(/\.js$/, ".d.ts"));
	const req = createRequire(fromFile);
	const pkg = spec.split("/").slice(0, spec.startsWith("@") ? 2 : 1).join("/");
	const root = dirname(req.resolve(`${pkg}/package.json`));
	return join(root, spec.slice(pkg.length + 1) + ".d.ts");
}

// The properties of the first interface of a .d.ts, with the type each refers to.
function propsOf(file) {
	if (interfaces.has(file)) return interfaces.get(file);
	let text;
	try {
		text = readFileSync(file, "utf8");
	} catch {
		interfaces.set(file, null);
		return null;
	}
	const imports = new Map();
	for (const m of text.matchAll(/import \{ (\w+) \} from "([^"]+)";/g)) imports.set(m[1], m[2]);
	const body = text.match(/export interface \w+(?: extends [\w, ]+)? \{\n([\s\S]*?)\n\}/);
	if (!body) {
		interfaces.set(file, null); // a type alias (IntOrString, Quantity): no fields
		return null;
	}
	const props = new Map();
	for (const m of body[1].matchAll(/^ {4}"([^"]+)"\??: (.*)$/gm)) {
		const t = m[2].match(/^(?:Array<)?(?:\{ \[key: string\]: )?(I\w+)/);
		const ref = t && imports.has(t[1]) ? resolveImport(file, imports.get(t[1])) : null;
		props.set(m[1], ref);
	}
	const entry = { props };
	interfaces.set(file, entry);
	return entry;
}

function checkFields(value, file, path, errors) {
	const entry = file ? propsOf(file) : null;
	if (!entry || value === null || typeof value !== "object") return;
	if (Array.isArray(value)) {
		value.forEach((v, i) => checkFields(v, file, `${path}[${i}]`, errors));
		return;
	}
	const mapOf = entry.props.size === 0;
	for (const [key, v] of Object.entries(value)) {
		if (!entry.props.has(key)) {
			if (!mapOf) errors.push(`${path}: unknown field "${key}"`);
			continue;
		}
		checkFields(v, entry.props.get(key), `${path}.${key}`, errors);
	}
}

// --- the objects ---------------------------------------------------------------------------

async function validateObject(obj) {
	const errors = [];
	if (!obj || typeof obj !== "object" || !obj.apiVersion || !obj.kind)
		return ["not a Kubernetes object: no apiVersion or kind"];
	const path = modelPath(obj.apiVersion, obj.kind);
	let Model;
	try {
		Model = (await import(pathToFileURL(path)))[obj.kind];
	} catch {
		return [`no schema for ${obj.apiVersion} ${obj.kind}`];
	}
	try {
		new Model(obj).validate();
	} catch (e) {
		const list = e.errors ?? [];
		if (list.length === 0) errors.push(String(e.message ?? e));
		for (const err of list) {
			const where = err.instancePath || "/";
			errors.push(`${where}: ${err.message ?? err.keyword} ${JSON.stringify(err.params ?? {})}`);
		}
	}
	checkFields(obj, path.replace(/\.js$/, ".d.ts"), obj.kind, errors);
	return errors;
}

async function main(argv) {
	let configDir = null;
	if (argv[0] === "--config") {
		configDir = argv[1];
		argv = argv.slice(2);
	}
	if (argv.length === 0 || (configDir !== null && !configDir)) {
		console.error("usage: node validate.mjs [--config DIR] FILE...");
		return 2;
	}
	let bad = 0;
	for (const file of argv) {
		const docs = parseAllDocuments(readFileSync(file, "utf8"));
		for (const doc of docs) {
			if (doc.errors.length) {
				console.log(`${file}: not YAML: ${doc.errors[0].message}`);
				bad++;
				continue;
			}
			const obj = doc.toJS();
			if (obj === null) continue;
			const name = `${obj.kind ?? "?"}/${obj.metadata?.name ?? "?"}`;
			const errors = await validateObject(obj);
			bad += errors.length ? 1 : 0;
			if (errors.length) console.log(`${file}: ${name}:\n  ${errors.join("\n  ")}`);
			else console.log(`${file}: ${name}: ok`);
			const conf = obj.kind === "ConfigMap" ? obj.data?.["fedguardd.yaml"] : undefined;
			if (configDir && conf !== undefined) {
				const out = join(configDir, `${basename(dirname(file))}-${obj.metadata.name}.yaml`);
				writeFileSync(out, conf);
				console.log(`${file}: ${name}: fedguardd.yaml written to ${out}`);
			}
		}
	}
	return bad ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
