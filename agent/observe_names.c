// SPDX-License-Identifier: Apache-2.0
/*
 * Names for the numbers events carry: the SPIFFE ID of an identity number
 * (the state's "identities" section) and the name of a rule id (a rule's
 * position in the policy document in force). Rebuilt when the agent's
 * state changes (agent.state_gen), and the policy document parsed again
 * only when its text changed. Identity numbers are never reused, so a
 * name once given stays right; a rule id names the rule of the document
 * in force when the record is made, which after a `policy apply` may not
 * be the one the event's verdict used (docs/ARCHITECTURE.md, Limitations).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "log.h"
#include "observe_int.h"
#include "policy_parse.h"
#include "state.h"

static void ids_free(struct observe_names *n)
{
	for (size_t i = 0; i < n->n_ids; i++)
		flow_name_put(n->ids[i].name);
	free(n->ids);
	n->ids = NULL;
	n->n_ids = 0;
}

static void rules_free(struct observe_names *n)
{
	for (size_t i = 0; i < n->n_rules; i++)
		flow_name_put(n->rules[i]);
	free(n->rules);
	free(n->doc);
	n->rules = NULL;
	n->n_rules = 0;
	n->doc = NULL;
}

void observe_names_free(struct observe_names *n)
{
	ids_free(n);
	rules_free(n);
	n->built = false;
}

static int by_id(const void *a, const void *b)
{
	__u32 x = ((const struct observe_id_name *)a)->id;
	__u32 y = ((const struct observe_id_name *)b)->id;

	return x < y ? -1 : x > y;
}

static int ids_build(struct observe_names *n, struct json_object *state)
{
	struct json_object *ids = state_section(state, "identities");
	size_t cap = (size_t)json_object_object_length(ids), i = 0;

	n->ids = calloc(cap ? cap : 1, sizeof(*n->ids));
	if (!n->ids)
		return -ENOMEM;
	json_object_object_foreach (ids, id, num) {
		if (i == cap)
			break;
		n->ids[i].id = (__u32)json_object_get_int64(num);
		n->ids[i].name = flow_name_new(id);
		if (!n->ids[i].name)
			break;
		i++;
	}
	n->n_ids = i;
	qsort(n->ids, n->n_ids, sizeof(*n->ids), by_id);
	return 0;
}

/* The policy document's text in the state, "" when none. */
static const char *policy_text(struct json_object *state, const char **source)
{
	struct json_object *p, *t, *s;

	*source = "policy";
	if (!json_object_object_get_ex(state, "policy", &p) ||
	    !json_object_object_get_ex(p, "document", &t))
		return "";
	if (json_object_object_get_ex(p, "source", &s))
		*source = json_object_get_string(s);
	return json_object_get_string(t);
}

static int rules_build(struct observe_names *n, struct json_object *state)
{
	struct policy_doc *doc = NULL;
	struct policy_error perr;
	const char *source, *text = policy_text(state, &source);

	if (n->doc && strcmp(n->doc, text) == 0)
		return 0;
	rules_free(n);
	n->doc = strdup(text);
	if (!n->doc)
		return -ENOMEM;
	if (!*text)
		return 0;
	if (policy_parse_buffer(source, text, strlen(text), &doc, &perr))
		return log_debug_errno(-EINVAL, "observe: the policy in force: %s", perr.msg);
	n->rules = calloc(doc->n_rules ? doc->n_rules : 1, sizeof(*n->rules));
	for (size_t i = 0; n->rules && i < doc->n_rules; i++) {
		n->rules[i] = doc->rules[i].name ? flow_name_new(doc->rules[i].name) : NULL;
		n->n_rules = i + 1;
	}
	policy_doc_free(doc);
	return n->rules ? 0 : -ENOMEM;
}

static void refresh(struct observe *o)
{
	struct observe_names *n = &o->names;

	if (n->built && n->state_gen == o->ag->state_gen)
		return;
	ids_free(n);
	if (ids_build(n, o->ag->state) || rules_build(n, o->ag->state))
		log_debug("observe: names of identities or rules are incomplete");
	n->state_gen = o->ag->state_gen;
	n->built = true;
}

static struct flow_name *id_name(const struct observe_names *n, __u32 id)
{
	struct observe_id_name key = {.id = id}, *hit;

	if (id < FG_ID_DYNAMIC_MIN || !n->n_ids)
		return NULL;
	hit = bsearch(&key, n->ids, n->n_ids, sizeof(*n->ids), by_id);
	return hit ? flow_name_get(hit->name) : NULL;
}

void observe_names_resolve(struct observe *o, struct flow_record *r)
{
	struct observe_names *n = &o->names;

	refresh(o);
	r->local_name = id_name(n, r->local_id);
	r->peer_name = id_name(n, r->peer_id);
	if (r->rule_id >= 1 && r->rule_id <= n->n_rules)
		r->rule_name = flow_name_get(n->rules[r->rule_id - 1]);
}
