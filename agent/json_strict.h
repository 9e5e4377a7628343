/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Strict JSON for documents written by other parties (trust bundles).
 *
 * json-c 0.16, even with JSON_TOKENER_STRICT, accepts single-quoted
 * strings, NaN and Infinity, "1." and raw control characters in strings;
 * it clamps integers beyond 64 bits to the nearest limit, and of duplicate
 * member names it keeps the last without a word, so that two readers of one
 * document can see different values. json_strict_parse() therefore first
 * walks the text itself, by the grammar of RFC 8259, and rejects all of
 * these; member names are compared after json-c has decoded them (so
 * "k\u0065ys" and "keys" are duplicates, as they are to json-c). Only then
 * does json-c build the tree.
 */
#ifndef FEDGUARD_JSON_STRICT_H
#define FEDGUARD_JSON_STRICT_H

#include <stddef.h>

#include <json-c/json.h>

enum {
	JSON_STRICT_DEPTH_MAX = 64, /* the largest depth_max accepted */
};

/*
 * Parses text (len bytes, no NUL needed) into *out, the caller's to
 * json_object_put(). At most depth_max objects and arrays may nest.
 * Returns 0, or -EINVAL with a message in why (when why_len is not 0):
 * "not JSON: CAUSE at offset N" for text that is not RFC 8259 JSON, or
 * "PATH: duplicate member 'NAME' at offset N" with PATH such as "keys[0]"
 * (nothing at the top level). -ENOMEM, and -EINVAL for a depth_max of 0 or
 * above JSON_STRICT_DEPTH_MAX. Any value may be the document's: the JSON
 * text "null" gives *out = NULL, which json-c takes for a null value.
 */
int json_strict_parse(const char *text, size_t len, unsigned int depth_max,
		      struct json_object **out, char *why, size_t why_len);

#endif /* FEDGUARD_JSON_STRICT_H */
