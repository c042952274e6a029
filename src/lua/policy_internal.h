/* policy_internal.h — what the files of the policy host share (not an API): policy.c
 * (states, hooks, budgets, reload), message.c (the request and response tables), plan.c
 * (reading plans). The caller holds the policy's Lua state; loop thread of its worker.
 */
#ifndef HG_LUA_POLICY_INTERNAL_H
#define HG_LUA_POLICY_INTERNAL_H

#include <lua.h>

#include "base/buf.h"
#include "http/message.h"
#include "lua/plan.h"
#include "lua/policy.h"

#define HG_PLAN_MAX_REDIRECTS 5 /* origin.max_redirects when absent (docs/policy-api.md) */
#define HG_POLICY_MAX_HEADER_BYTES 16384 /* a policy response's headers, names and values */

/* Pushes the lazy `req` table of `req` (message.c): it reads `req` until
 * hg__lua_request_end(L, t), which the host calls once Lua is done with the request;
 * hg__lua_request_materialize(L, t) sets every field at once (a table that outlives the
 * request, e.g. the busted host's). */
void hg__lua_push_request(lua_State *L, const hg_request_t *req);
void hg__lua_request_materialize(lua_State *L, int t);
void hg__lua_request_end(lua_State *L, int t);
int hg__lua_to_response(lua_State *L, hg_request_t *req, hg_response_t *res);
int hg__lua_valid_header(const char *name, size_t nlen, const char *value, size_t vlen);
int hg__lua_to_plan(lua_State *L, int t, hg_request_t *req, hg_plan_t *plan);
int hg__lua_parse_action(lua_State *L, int idx);
/* Reads what on_uri returned (the value at the top of the stack, left there):
 * HG_ACT_UNSET for nil, an action, HG_ACT_HOOK after appending the URL it returned to
 * `replacement`, HG_ENOMEM, or HG_EPOLICY (logged with the request id). */
int hg__lua_uri_result(lua_State *L, hg_buf_t *replacement, const char *req_id);

#endif
