// SPDX-License-Identifier: Apache-2.0
/*
 * The configuration file. libyaml loads the document into a node tree
 * whose nodes carry their positions; the top mapping is checked against
 * the program's getopt table and turned into a list of items, one per
 * option to give (a list value gives one item per element). Nothing here
 * interprets a value: config_feed() hands each to the program's own
 * option parser.
 *
 * libyaml does not type plain scalars: `80` and `"80"` are the same string
 * to it, and both are the argument 80, as on the command line. Only flags
 * look at the style: true and false must be plain.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "cleanup.h"
#include "log.h"

/* A configuration file is a page of options; anything this large is a mistake. */
#define CONFIG_FILE_MAX (1024 * 1024)

struct config_item {
	const struct option *opt;
	char *value;		   /* NULL: a flag, or an optional argument left out */
	size_t line, column;	   /* of the value (the list element), 1-based */
	size_t key_line, key_column; /* of its key */
};

struct config {
	const struct config_spec *spec;
	char *path;		/* NULL: no file */
	bool check_only;
	bool *given;		/* per option of spec->opts: the command line gives it */
	size_t n_opts;
	struct config_item *items;
	size_t n_items, cap_items;
	unsigned int errors;	/* errors of the file's content, already logged */
	const struct config_item *current; /* being fed: messages are placed at its value */
};

/* --- the command line --------------------------------------------------------------------- */

static size_t opts_count(const struct option *opts)
{
	size_t n = 0;

	while (opts[n].name)
		n++;
	return n;
}

/* The table index of the option getopt_long returned: idx for long options, else by val. */
static int opt_index(const struct config *c, int val, int idx)
{
	if (idx >= 0)
		return idx;
	for (size_t i = 0; i < c->n_opts; i++)
		if (c->spec->opts[i].val == val && !c->spec->opts[i].flag)
			return (int)i;
	return -1;
}

static int scan_argv(struct config *c, int argc, char **argv)
{
	const char *path = NULL;
	int val, idx;

	optind = 0; /* glibc: start afresh, whatever parsed argv before */
	opterr = 1;
	for (;;) {
		idx = -1;
		val = getopt_long(argc, argv, c->spec->shortopts, c->spec->opts, &idx);
		if (val == -1)
			break;
		if (val == '?' || val == ':')
			return -EINVAL; /* getopt printed why */
		idx = opt_index(c, val, idx);
		if (idx >= 0)
			c->given[idx] = true;
		if (val == c->spec->config_val || val == c->spec->check_val) {
			if (path) {
				log_error("give --%s FILE once", c->spec->opts[idx].name);
				return -EINVAL;
			}
			path = optarg;
			c->check_only = val == c->spec->check_val;
		}
	}
	optind = 0;
	if (path && !(c->path = strdup(path)))
		return -ENOMEM;
	return 0;
}

/* --- the file ----------------------------------------------------------------------------- */

static int fail(struct config *c, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Logs "FILE:LINE:COLUMN: MESSAGE" about node n and counts it. */
static int fail(struct config *c, const yaml_node_t *n, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s:%zu:%zu: %s", c->path, n->start_mark.line + 1, n->start_mark.column + 1, msg);
	c->errors++;
	return -EINVAL;
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static bool is_plain(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* The YAML 1.2 core schema's null: "", ~, null, Null, NULL, unquoted. */
static bool is_null(const yaml_node_t *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

	for (size_t i = 0; is_plain(n) && i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (!strcmp(scalar(n), nulls[i]))
			return true;
	return false;
}

static const char *kind(const yaml_node_t *n)
{
	if (n->type == YAML_MAPPING_NODE)
		return "a mapping";
	if (n->type == YAML_SEQUENCE_NODE)
		return "a list";
	return is_null(n) ? "nothing" : "a scalar";
}

/* true or false, plain; -1 for anything else. */
static int flag_value(const yaml_node_t *n)
{
	static const char *const yes[] = {"true", "True", "TRUE"};
	static const char *const no[] = {"false", "False", "FALSE"};

	for (size_t i = 0; is_plain(n) && i < 3; i++) {
		if (!strcmp(scalar(n), yes[i]))
			return 1;
		if (!strcmp(scalar(n), no[i]))
			return 0;
	}
	return -1;
}

static bool in_list(const char *const *list, const char *name)
{
	for (; list && *list; list++)
		if (!strcmp(*list, name))
			return true;
	return false;
}

/* One option to give, at val's position; value NULL for a flag. */
static int add_item(struct config *c, const struct option *opt, const yaml_node_t *key,
		    const yaml_node_t *val, const char *value)
{
	struct config_item *it;

	if (c->n_items == c->cap_items) {
		size_t cap = c->cap_items ? 2 * c->cap_items : 16;

		it = realloc(c->items, cap * sizeof(*it));
		if (!it)
			return -ENOMEM;
		c->items = it;
		c->cap_items = cap;
	}
	it = &c->items[c->n_items];
	*it = (struct config_item){
		.opt = opt,
		.line = val->start_mark.line + 1,
		.column = val->start_mark.column + 1,
		.key_line = key->start_mark.line + 1,
		.key_column = key->start_mark.column + 1,
	};
	if (value && !(it->value = strdup(value)))
		return -ENOMEM;
	c->n_items++;
	return 0;
}

/* One argument: a scalar with something in it, no NUL or control bytes. */
static int check_argument(struct config *c, const char *name, const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || is_null(n))
		return fail(c, n, "key '%s': expected its argument (a scalar), got %s", name,
			    kind(n));
	if (strlen(scalar(n)) != n->data.scalar.length)
		return fail(c, n, "key '%s': the value contains a NUL byte", name);
	for (const char *p = scalar(n); *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return fail(c, n, "key '%s': the value contains control character 0x%02x",
				    name, (unsigned char)*p);
	return 0;
}

/* An option with an argument: a scalar, or a list of them for a repeatable one. */
static int load_argument(struct config *c, const struct option *opt, const yaml_node_t *key,
			 const yaml_node_t *val, yaml_document_t *doc)
{
	int r;

	if (val->type != YAML_SEQUENCE_NODE) {
		if (check_argument(c, opt->name, val))
			return 0;
		return add_item(c, opt, key, val, scalar(val));
	}
	if (!in_list(c->spec->repeatable, opt->name))
		return fail(c, val, "key '%s': a list, but the option is not repeatable", opt->name);
	for (yaml_node_item_t *i = val->data.sequence.items.start; i < val->data.sequence.items.top;
	     i++) {
		yaml_node_t *el = yaml_document_get_node(doc, *i);

		if (check_argument(c, opt->name, el))
			continue;
		r = add_item(c, opt, key, el, scalar(el));
		if (r)
			return r;
	}
	return 0;
}

/* A flag: true gives it, false leaves it out; an optional argument may be a scalar too. */
static int load_flag(struct config *c, const struct option *opt, const yaml_node_t *key,
		     const yaml_node_t *val)
{
	int on = flag_value(val);

	if (on < 0 && opt->has_arg == optional_argument && !check_argument(c, opt->name, val))
		return add_item(c, opt, key, val, scalar(val));
	if (on < 0 && opt->has_arg == optional_argument)
		return 0;
	if (on < 0 && val->type == YAML_SCALAR_NODE && !is_null(val))
		return fail(c, val, "key '%s': the option takes no value: expected true or false, "
			    "got '%.160s'", opt->name, scalar(val));
	if (on < 0)
		return fail(c, val, "key '%s': the option takes no value: expected true or false, "
			    "got %s", opt->name, kind(val));
	if (!on)
		return 0;
	return add_item(c, opt, key, val, NULL);
}

/* Edit distance of two short names, for "did you mean". */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[65], prev, tmp;

	if (la > 64 || lb > 64)
		return 64;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			tmp = row[j];
			row[j] = prev + (a[i - 1] != b[j - 1]);
			if (row[j - 1] + 1 < row[j])
				row[j] = row[j - 1] + 1;
			if (tmp + 1 < row[j])
				row[j] = tmp + 1;
			prev = tmp;
		}
	}
	return row[lb];
}

static int unknown_key(struct config *c, const yaml_node_t *key)
{
	const char *name = scalar(key), *best = NULL;
	size_t best_d = 3;

	while (*name == '-')
		name++;
	for (size_t i = 0; i < c->n_opts; i++) {
		size_t d = distance(name, c->spec->opts[i].name);

		if (d < best_d && !in_list(c->spec->cmdline_only, c->spec->opts[i].name)) {
			best_d = d;
			best = c->spec->opts[i].name;
		}
	}
	if (best)
		return fail(c, key, "unknown key '%.160s': not an option of %s (did you mean '%s'?)",
			    scalar(key), c->spec->program, best);
	return fail(c, key, "unknown key '%.160s': not an option of %s (see %s --help)",
		    scalar(key), c->spec->program, c->spec->program);
}

static const struct option *find_opt(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->n_opts; i++)
		if (!strcmp(c->spec->opts[i].name, name))
			return &c->spec->opts[i];
	return NULL;
}

/* The key of pair p: an option, not a command, not seen before in the mapping. */
static const struct option *check_key(struct config *c, yaml_document_t *doc,
				      const yaml_node_t *map, const yaml_node_pair_t *p)
{
	yaml_node_t *key = yaml_document_get_node(doc, p->key);
	const struct option *opt;

	if (key->type != YAML_SCALAR_NODE) {
		fail(c, key, "keys must be option names, got %s", kind(key));
		return NULL;
	}
	for (const yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
		yaml_node_t *other = yaml_document_get_node(doc, q->key);

		if (other->type == YAML_SCALAR_NODE && !strcmp(scalar(other), scalar(key))) {
			fail(c, key, "duplicate key '%.160s' (first at line %zu)", scalar(key),
			     other->start_mark.line + 1);
			return NULL;
		}
	}
	opt = find_opt(c, scalar(key));
	if (!opt) {
		unknown_key(c, key);
		return NULL;
	}
	if (in_list(c->spec->cmdline_only, opt->name)) {
		fail(c, key, "key '%s': a command, not a setting: give --%s on the command line",
		     opt->name, opt->name);
		return NULL;
	}
	return opt;
}

static int load_mapping(struct config *c, yaml_document_t *doc, const yaml_node_t *root)
{
	int r;

	if (root->type != YAML_MAPPING_NODE) {
		fail(c, root, "expected a mapping of option names to values, got %s", kind(root));
		return 0;
	}
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		const struct option *opt = check_key(c, doc, root, p);
		yaml_node_t *key = yaml_document_get_node(doc, p->key);
		yaml_node_t *val = yaml_document_get_node(doc, p->value);

		if (!opt)
			continue;
		if (opt->has_arg == required_argument)
			r = load_argument(c, opt, key, val, doc);
		else
			r = load_flag(c, opt, key, val);
		if (r && r != -EINVAL) /* -EINVAL: logged and counted, go on */
			return r;
	}
	return 0;
}

static int yaml_failure(struct config *c, const yaml_parser_t *p)
{
	if (p->error == YAML_MEMORY_ERROR)
		return -ENOMEM;
	log_error("%s:%zu:%zu: not YAML: %s%s%s", c->path, p->problem_mark.line + 1,
		  p->problem_mark.column + 1, p->problem ? p->problem : "unknown problem",
		  p->context ? " " : "", p->context ? p->context : "");
	return -EINVAL;
}

static void cleanup_yaml_doc(yaml_document_t **d)
{
	if (*d)
		yaml_document_delete(*d);
}

/* Parses the stream's one document (none: an empty configuration) and loads it. */
static int load_stream(struct config *c, yaml_parser_t *p)
{
	__attribute__((cleanup(cleanup_yaml_doc))) yaml_document_t *loaded = NULL;
	yaml_document_t doc, next;
	yaml_node_t *root, *extra;

	if (!yaml_parser_load(p, &doc))
		return yaml_failure(c, p);
	loaded = &doc;
	root = yaml_document_get_root_node(&doc);
	if (root && !yaml_parser_load(p, &next))
		return yaml_failure(c, p);
	extra = root ? yaml_document_get_root_node(&next) : NULL;
	if (extra)
		fail(c, extra, "a second YAML document: one configuration per file");
	if (root)
		yaml_document_delete(&next);
	if (!root || is_null(root))
		return 0;
	return load_mapping(c, &doc, root);
}

static int load_file(struct config *c)
{
	_cleanup_fclose_ FILE *f = fopen(c->path, "re");
	yaml_parser_t parser;
	struct stat st;
	int r;

	if (!f)
		return log_error_errno(-errno, "configuration '%s'", c->path);
	if (fstat(fileno(f), &st))
		return log_error_errno(-errno, "configuration '%s'", c->path);
	if (!S_ISREG(st.st_mode)) {
		log_error("configuration '%s': not a regular file", c->path);
		return -EINVAL;
	}
	if (st.st_size > CONFIG_FILE_MAX) {
		log_error("configuration '%s': %lld bytes, more than the %d a configuration may have",
			  c->path, (long long)st.st_size, CONFIG_FILE_MAX);
		return -EFBIG;
	}
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_file(&parser, f);
	r = load_stream(c, &parser);
	yaml_parser_delete(&parser);
	return r;
}

/* --- the API ------------------------------------------------------------------------------ */

int config_open(const struct config_spec *spec, int argc, char **argv, struct config **out)
{
	struct config *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->spec = spec;
	c->n_opts = opts_count(spec->opts);
	c->given = calloc(c->n_opts + 1, sizeof(*c->given));
	r = c->given ? scan_argv(c, argc, argv) : -ENOMEM;
	if (r) {
		config_free(c);
		return r;
	}
	*out = c;
	return c->path ? load_file(c) : 0;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_items; i++)
		free(c->items[i].value);
	free(c->items);
	free(c->given);
	free(c->path);
	free(c);
}

const char *config_path(const struct config *c)
{
	return c ? c->path : NULL;
}

bool config_check_only(const struct config *c)
{
	return c && c->check_only;
}

size_t config_count(const struct config *c)
{
	return c ? c->n_items : 0;
}

static bool item_given(const struct config *c, const struct config_item *it)
{
	return c->given[it->opt - c->spec->opts];
}

bool config_cmdline_gives(const struct config *c, const char *name)
{
	const struct option *opt = c ? find_opt(c, name) : NULL;

	return opt && c->given[opt - c->spec->opts];
}

/* The item of the file that gives option @name (the first), unless the command line does. */
static const struct config_item *file_item(const struct config *c, const char *name, size_t len)
{
	for (size_t i = 0; i < c->n_items; i++) {
		const struct config_item *it = &c->items[i];

		if (strlen(it->opt->name) == len && !strncmp(it->opt->name, name, len))
			return item_given(c, it) ? NULL : it;
	}
	return NULL;
}

/*
 * Where a message belongs: the first option it names as "--NAME" that the
 * file or the command line gives decides. The file's: at its key; the
 * command line's: nowhere in the file (no prefix); none: the file alone.
 */
static void place_message(const struct config *c, const char *msg, char *buf, unsigned int len)
{
	const struct config_item *it;
	char name[65];
	size_t n;

	for (const char *p = strstr(msg, "--"); p; p = strstr(p + 2, "--")) {
		n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz0123456789-");
		if (n == 0 || n >= sizeof(name))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)n, p + 2);
		if (config_cmdline_gives(c, name))
			return;
		it = file_item(c, name, n);
		if (it) {
			snprintf(buf, len, "%s:%zu:%zu: ", c->path, it->key_line, it->key_column);
			return;
		}
	}
	snprintf(buf, len, "%s: ", c->path);
}

static void prefix(void *ctx, const char *msg, char *buf, unsigned int len)
{
	const struct config *c = ctx;

	if (c->current)
		snprintf(buf, len, "%s:%zu:%zu: ", c->path, c->current->line, c->current->column);
	else
		place_message(c, msg, buf, len);
}

int config_feed(struct config *c, int (*fn)(int val, void *ctx), void *ctx)
{
	unsigned int failed = 0;
	int r = 0;

	if (!c)
		return 0;
	log_set_prefix(prefix, c);
	for (size_t i = 0; i < c->n_items; i++) {
		c->current = &c->items[i];
		if (item_given(c, c->current))
			continue;
		optarg = c->current->value;
		r = fn(c->current->opt->val, ctx);
		if (r == -ENOMEM)
			break;
		failed += r != 0;
	}
	c->current = NULL;
	optarg = NULL;
	log_set_prefix(NULL, NULL);
	if (r == -ENOMEM)
		return r;
	return failed || c->errors ? -EINVAL : 0;
}

void config_annotate(struct config *c)
{
	if (c && c->path)
		log_set_prefix(prefix, c);
	else
		log_set_prefix(NULL, NULL);
}

/* Whether the file values of option i are the same in a and b (in order). */
static bool same_values(const struct config *a, const struct config *b, size_t i)
{
	size_t ia = 0, ib = 0;
	bool ea, eb;

	for (;;) {
		while (a && ia < a->n_items && (size_t)(a->items[ia].opt - a->spec->opts) != i)
			ia++;
		while (b && ib < b->n_items && (size_t)(b->items[ib].opt - b->spec->opts) != i)
			ib++;
		ea = !a || ia == a->n_items;
		eb = !b || ib == b->n_items;
		if (ea || eb)
			return ea && eb;
		if ((a->items[ia].value == NULL) != (b->items[ib].value == NULL) ||
		    (a->items[ia].value && strcmp(a->items[ia].value, b->items[ib].value)))
			return false;
		ia++;
		ib++;
	}
}

int config_each_change(const struct config *a, const struct config *b,
		       void (*fn)(const char *name, void *ctx), void *ctx)
{
	const struct config *any = a ? a : b;
	int n = 0;

	if (!any)
		return 0;
	for (size_t i = 0; i < any->n_opts; i++) {
		if (any->given[i] || same_values(a, b, i))
			continue;
		fn(any->spec->opts[i].name, ctx);
		n++;
	}
	return n;
}
