/* reuse.c — answering a request with a plan on_request already gave for the same request
 * (docs/policy-api.md, "Reusing plans").
 *
 * A policy that returns `reuse = true` in its table lets its frozen plans be reused: when
 * on_request answers with hg.plan(t, { vary = …, ttl = …, expires = … }), later requests
 * with the same method, target and scheme, and the same values of the headers in `vary`
 * (and no body), get that plan without on_request running — for ttl seconds at most,
 * never after `expires`. The hot request of a live stream (every viewer reloading one playlist URL
 * every few seconds) then costs a table lookup instead of a Lua call.
 *
 * Security: the policy as a whole opts in, not a recipe: a recipe knows what its own
 * answer depends on, not what a wrapper around it checks (a client address allowlist,
 * say), and a reused answer skips the wrapper too. One entry per (method, target,
 * scheme), at most HG_REUSE_MAX per policy, least recently used first out; a reload
 * starts with none. A plan is kept the second time its request is seen (admission, below).
 *
 * A rule with `token` (a viewer's JWT in the query) keys the plan by the target without
 * that parameter's value, and holds the values of the claims the plan depends on: another
 * viewer's request gets it once their token verifies under the rule's keys and has the
 * same values — a JWT check instead of a Lua call for each new viewer — with the proxy
 * param of that name set to their own token. Security: a token that does not verify is
 * on_request's to answer (a 401, say), never a reused plan; and a plan is kept only when
 * that token is nowhere else in it, so no viewer's token reaches another viewer.
 * Owner thread of the policy only.
 */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "base/log.h"
#include "crypto/jwt.h"
#include "lua/policy_internal.h"
#include "url/url.h"

#define HG_REUSE_MAX 1024
#define HG_REUSE_TOKEN_MAX 4096 /* longest token a plan is shared by (a key holds it out) */

typedef struct reuse_s {
  hg_lru_node_t node;
  hg_plan_frozen_t *fz;   /* retained */
  uint64_t deadline_ms;   /* monotonic (uv_hrtime) */
  int64_t until;          /* unix seconds, 0: none */
  char *vals;             /* the vary headers' values as the request had them (put_value),
                             then the token's claim values (put_claims), after the key */
  char key[];
} reuse_t;

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* "METHOD scheme target", into buf (cap bytes). Returns its length, or 0 when too long. */
static size_t make_key(const hg_request_t *req, char *buf, size_t cap) {
  size_t ml = strlen(req->method), n = ml + 1 + 5 + 1 + req->target_len;
  if (n > cap) return 0;
  memcpy(buf, req->method, ml);
  buf[ml] = ' ';
  memcpy(buf + ml + 1, req->tls ? "https" : "http ", 5);
  buf[ml + 6] = ' ';
  memcpy(buf + ml + 7, req->target, req->target_len);
  return n;
}

/* A request's token for a rule's query parameter: its value (decoded when it has to be,
 * into dec), and the key every token shares ("METHOD scheme\1param target" with the
 * value left out: no target's plain key looks like it). */
typedef struct token_s {
  const char *val;
  size_t len;
  const char *raw; /* the value as the target has it */
  size_t rawlen;
  hg_buf_t dec;
} token_t;

static int plain(const char *s, size_t n) { return !memchr(s, '%', n) && !memchr(s, '+', n); }

/* Whether the query pair's name, decoded as req.query decodes it, is `name`. */
static int name_is(const hg_url_param_t *prm, const char *name, size_t nl, hg_buf_t *tmp) {
  if (plain(prm->name, prm->name_len)) return prm->name_len == nl && memcmp(prm->name, name, nl) == 0;
  hg_buf_clear(tmp);
  return hg_url_decode(tmp, prm->name, prm->name_len, HG_URL_DEC_PLUS | HG_URL_DEC_LENIENT) == 0 &&
         tmp->len == nl && memcmp(tmp->data, name, nl) == 0;
}

/* The token key into buf (cap bytes) and the token into *t. Returns the key's length, or
 * 0 when the parameter is absent, empty, repeated (which one would the policy have read?)
 * or too long. Free t->dec after. */
static size_t token_key(const hg_request_t *req, const char *param, char *buf, size_t cap, token_t *t) {
  t->val = t->raw = NULL;
  t->len = t->rawlen = 0;
  t->dec = (hg_buf_t)HG_BUF_INIT;
  if (req->path_len >= req->target_len) return 0; /* no query */
  const char *q = req->target + req->path_len + 1, *vs = NULL;
  size_t nl = strlen(param), vn = 0, seen = 0;
  hg_url_query_iter_t it;
  hg_url_param_t prm;
  hg_url_query_iter(&it, q, (size_t)(req->target + req->target_len - q));
  while (hg_url_query_next(&it, &prm))
    if (name_is(&prm, param, nl, &t->dec) && seen++ == 0) vs = prm.value, vn = prm.value_len;
  hg_buf_clear(&t->dec);
  if (seen != 1 || vn == 0 || vn > HG_REUSE_TOKEN_MAX) return 0;
  t->raw = vs, t->rawlen = vn;
  if (plain(vs, vn)) {
    t->val = vs, t->len = vn;
  } else {
    if (hg_url_decode(&t->dec, vs, vn, HG_URL_DEC_PLUS | HG_URL_DEC_LENIENT) != 0 || t->dec.len == 0) return 0;
    t->val = t->dec.data, t->len = t->dec.len;
  }
  size_t ml = strlen(req->method), head = (size_t)(vs - req->target);
  size_t n = ml + 7 + nl + 1 + req->target_len - vn;
  if (n > cap) return 0;
  char *w = buf;
  memcpy(w, req->method, ml), w += ml;
  memcpy(w, req->tls ? " https\1" : " http \1", 7), w += 7;
  memcpy(w, param, nl), w += nl;
  *w++ = ' ';
  memcpy(w, req->target, head), w += head;
  memcpy(w, vs + vn, req->target_len - head - vn);
  return n;
}

/* Verifies the token under the rule (at this moment) and finds its claims' values.
 * Returns 0 with the claims JSON in *claims (free it) and the spans in vals/lens. */
static int token_claims(const hg_reuse_token_t *rule, const token_t *t, hg_buf_t *claims, const char **vals,
                        size_t *lens) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  hg_jwt_verify_opts_t o = rule->verify;
  o.now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  if (hg_jwt_verify(t->val, t->len, &o, claims, NULL) != 0) return -1;
  return hg_jwt_claims_find(claims->data, claims->len, rule->claims, rule->nclaims, vals, lens);
}

/* Writes the claim values as put_value does ('+' raw JSON, or '-' absent; NUL after
 * each) at w; with w NULL only counts them. Returns the bytes. */
static size_t put_claims(const char *const *vals, const size_t *lens, size_t n, char *w) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    if (w) {
      w[total] = vals[i] ? '+' : '-';
      memcpy(w + total + 1, vals[i] ? vals[i] : "", lens[i]);
      w[total + 1 + lens[i]] = '\0';
    }
    total += lens[i] + 2;
  }
  return total;
}

/* Whether the claim values equal the ones kept at v (as put_claims wrote them). */
static int same_claims(const char *v, const char *const *vals, const size_t *lens, size_t n) {
  for (size_t i = 0; i < n; i++) {
    size_t wl = strlen(v);
    if (wl != lens[i] + 1 || v[0] != (vals[i] ? '+' : '-') || memcmp(v + 1, vals[i] ? vals[i] : "", lens[i]) != 0)
      return 0;
    v += wl + 1;
  }
  return 1;
}

/* Whether tok is in any string of the plan but the value of proxy param `param` (equal to
 * it). Security: such a plan would hand one viewer's token to the next. */
static int has(const char *s, size_t n, const char *tok, size_t tl) { return s && memmem(s, n, tok, tl); }
static int hass(const char *s, const char *tok, size_t tl) { return s && has(s, strlen(s), tok, tl); }

static int token_elsewhere(const hg_plan_frozen_t *fz, const char *tok, size_t tl, int raw) {
  const hg_plan_t *p = &fz->plan;
  const char *strs[] = {p->file_root, p->file_path, p->url, p->s3_key, p->s3.endpoint, p->s3.public_endpoint,
                        p->s3.region, p->s3.bucket, p->s3.access_key, p->s3.secret_key, p->s3.session_token,
                        p->content_type, p->disposition_name, p->proxy_from, p->proxy_to, p->proxy_prefix,
                        p->presign_prefix, fz->route};
  for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
    if (hass(strs[i], tok, tl)) return 1;
  for (size_t i = 0; i < p->nreq_headers; i++)
    if (hass(p->req_headers[i].name, tok, tl) || has(p->req_headers[i].value, p->req_headers[i].value_len, tok, tl))
      return 1;
  for (size_t i = 0; i < p->nheaders; i++)
    if (hass(p->headers[i].name, tok, tl) || has(p->headers[i].value, p->headers[i].value_len, tok, tl)) return 1;
  for (size_t i = 0; i < p->nct_allow; i++)
    if (hass(p->ct_allow[i], tok, tl)) return 1;
  if (has(p->proxy_sign_secret, p->proxy_sign_secret_len, tok, tl)) return 1;
  for (size_t i = 0; i < p->nproxy_params; i++) {
    const hg_header_t *kv = &p->proxy_params[i];
    int bound = !raw && strcmp(kv->name, fz->token->param) == 0;
    if (hass(kv->name, tok, tl)) return 1;
    if (bound ? kv->value_len != tl || memcmp(kv->value, tok, tl) != 0 : has(kv->value, kv->value_len, tok, tl))
      return 1; /* a bound param that is not this token would be replaced by the next one's */
  }
  return 0;
}

/* Writes header `name`'s value in req as req.headers has it (repeated ones joined by
 * ", ") at w, after a flag ('+' present, '-' absent), then a NUL. Returns the bytes that
 * takes; with w NULL, only counts them. */
static size_t put_value(const hg_request_t *req, const char *name, char *w) {
  size_t nl = strlen(name), n = 1;
  int found = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    const hg_header_t *h = &req->headers[i];
    if (h->name_len != nl || strncasecmp(h->name, name, nl) != 0) continue;
    if (found) {
      if (w) memcpy(w + n, ", ", 2);
      n += 2;
    }
    if (w) memcpy(w + n, h->value, h->value_len);
    n += h->value_len;
    found = 1;
  }
  if (w) {
    w[0] = found ? '+' : '-';
    w[n] = '\0';
  }
  return n + 1;
}

/* Whether header `name` in req has the value kept at *v (as put_value wrote it).
 * Advances *v past it. */
static int same_value(const hg_request_t *req, const char *name, const char **v) {
  const char *want = *v;
  size_t wl = strlen(want);
  *v += wl + 1;
  size_t nl = strlen(name), pos = 1;
  int found = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    const hg_header_t *h = &req->headers[i];
    if (h->name_len != nl || strncasecmp(h->name, name, nl) != 0) continue;
    if (found) {
      if (pos + 2 > wl || memcmp(want + pos, ", ", 2) != 0) return 0;
      pos += 2;
    }
    if (pos + h->value_len > wl || memcmp(want + pos, h->value, h->value_len) != 0) return 0;
    pos += h->value_len;
    found = 1;
  }
  return want[0] == (found ? '+' : '-') && pos == wl;
}

static void drop(hg_policy_t *p, reuse_t *e) {
  hg_lru_remove(&p->reuse, &e->node);
  hg__lua_frozen_release(e->fz);
  free(e);
}

/* The live entry under key, or NULL (an expired one is dropped). */
static reuse_t *lookup(hg_policy_t *p, const char *key, size_t kl) {
  hg_lru_node_t *node = hg_lru_find(&p->reuse, key, kl, hg_lru_hash(key, kl));
  if (node == NULL) return NULL;
  reuse_t *e = hg_lru_entry(node, reuse_t, node);
  if (now_ms() >= e->deadline_ms || (e->until && time(NULL) > e->until)) {
    drop(p, e);
    return NULL;
  }
  return e;
}

/* Whether req has the vary values kept in e; *v is left after them. */
static int same_vary(const hg_request_t *req, const reuse_t *e, const char **v) {
  *v = e->vals;
  for (size_t i = 0; i < e->fz->nvary; i++)
    if (!same_value(req, e->fz->vary[i], v)) return 0; /* another variant: on_request decides */
  return 1;
}

static void hand_out(hg_policy_t *p, hg_request_t *req, reuse_t *e, hg_plan_t *plan) {
  hg_lru_touch(&p->reuse, &e->node);
  *plan = e->fz->plan;
  hg__lua_frozen_retain(e->fz);
  if (e->fz->route) req->route = hg_arena_strndup(req->arena, e->fz->route, strlen(e->fz->route));
}

/* The entry of a token rule for req's token in `param`, handed out with the token bound. */
static int get_by_token(hg_policy_t *p, hg_request_t *req, const char *param, hg_plan_t *plan) {
  char key[4096];
  token_t t;
  size_t kl = token_key(req, param, key, sizeof(key), &t);
  reuse_t *e = kl ? lookup(p, key, kl) : NULL;
  const char *v;
  int ok = 0;
  if (e && e->fz->token && strcmp(e->fz->token->param, param) == 0 && same_vary(req, e, &v)) {
    const hg_reuse_token_t *rule = e->fz->token;
    const char *vals[8];
    size_t lens[8];
    hg_buf_t claims = HG_BUF_INIT;
    char *tok = NULL;
    ok = token_claims(rule, &t, &claims, vals, lens) == 0 && same_claims(v, vals, lens, rule->nclaims) &&
         (tok = hg_arena_strndup(req->arena, t.val, t.len)) != NULL;
    hg_buf_free(&claims);
    if (ok) {
      hand_out(p, req, e, plan);
      for (size_t i = 0; i < plan->nproxy_params; i++)
        if (strcmp(plan->proxy_params[i].name, param) == 0) {
          plan->proxy_params[i].value = tok;
          plan->proxy_params[i].value_len = t.len;
        }
    }
  }
  hg_buf_free(&t.dec);
  return ok;
}

int hg__reuse_get(hg_policy_t *p, hg_request_t *req, hg_plan_t *plan) {
  if (p->reuse.n == 0 || req->body) return 0; /* a body is not part of the key: asked */
  char key[4096];
  size_t kl = make_key(req, key, sizeof(key));
  reuse_t *e = kl ? lookup(p, key, kl) : NULL;
  const char *v;
  if (e && same_vary(req, e, &v)) {
    hand_out(p, req, e, plan);
    return 1;
  }
  for (size_t i = 0; i < p->ntoken_params; i++)
    if (get_by_token(p, req, p->token_params[i], plan)) return 1;
  return 0;
}

/* Admission: a plan is kept for a request seen before (its key's hash in a small table
 * of recent ones), so a target asked once — a new viewer's token, a scan of random URLs —
 * costs a hash, not a frozen plan and an entry, and evicts nothing. */
#define SEEN 4096 /* hashes (a power of two) */

int hg__reuse_admit(hg_policy_t *p, const hg_request_t *req, const char *param) {
  char key[4096];
  size_t kl = 0;
  if (req->body == NULL && param) {
    token_t t;
    kl = token_key(req, param, key, sizeof(key), &t);
    hg_buf_free(&t.dec);
  } else if (req->body == NULL) {
    kl = make_key(req, key, sizeof(key));
  }
  if (kl == 0) return 0;
  if (p->reuse_seen == NULL && (p->reuse_seen = calloc(SEEN, sizeof(uint64_t))) == NULL) return 0;
  uint64_t h = hg_lru_hash(key, kl) | 1; /* never 0: an empty slot */
  uint64_t *slot = &p->reuse_seen[h & (SEEN - 1)];
  if (*slot == h) return 1;
  *slot = h;
  return 0;
}

/* For a token rule: the key, the claim values (bytes *cbytes) and whether the plan may be
 * shared at all (the token verifies, the policy's lookups know its parameter, the token
 * is nowhere else in the plan). Returns the key's length, or 0. */
static size_t token_put(hg_policy_t *p, const hg_request_t *req, const hg_plan_frozen_t *fz, char *key, size_t cap,
                        hg_buf_t *claims, const char **vals, size_t *lens, size_t *cbytes) {
  const hg_reuse_token_t *rule = fz->token;
  token_t t;
  size_t kl = token_key(req, rule->param, key, cap, &t);
  if (kl && (token_claims(rule, &t, claims, vals, lens) != 0 || token_elsewhere(fz, t.val, t.len, 0) ||
             (t.val != t.raw && token_elsewhere(fz, t.raw, t.rawlen, 1)))) kl = 0;
  hg_buf_free(&t.dec);
  size_t i = 0;
  while (kl && i < p->ntoken_params && strcmp(p->token_params[i], rule->param) != 0) i++;
  if (kl && i == p->ntoken_params) { /* a parameter the lookups do not try yet */
    char *name = i < HG_REUSE_TOKEN_PARAMS ? strdup(rule->param) : NULL;
    if (name == NULL) return 0;
    p->token_params[p->ntoken_params++] = name;
  }
  *cbytes = kl ? put_claims(vals, lens, rule->nclaims, NULL) : 0;
  return kl;
}

void hg__reuse_put(hg_policy_t *p, const hg_request_t *req, hg_plan_frozen_t *fz) {
  char key[4096];
  const char *cvals[8];
  size_t clens[8], cbytes = 0;
  hg_buf_t claims = HG_BUF_INIT;
  size_t kl = req->body || fz->reuse_ttl_ms == 0 ? 0
              : fz->token ? token_put(p, req, fz, key, sizeof(key), &claims, cvals, clens, &cbytes)
                          : make_key(req, key, sizeof(key));
  if (kl == 0 || (fz->reuse_until && time(NULL) > fz->reuse_until) ||
      (p->reuse.nbuckets == 0 && hg_lru_init(&p->reuse, 256) != 0)) {
    hg_buf_free(&claims);
    return;
  }
  size_t vbytes = cbytes;
  for (size_t i = 0; i < fz->nvary; i++) vbytes += put_value(req, fz->vary[i], NULL);
  uint64_t hash = hg_lru_hash(key, kl);
  hg_lru_node_t *old = hg_lru_find(&p->reuse, key, kl, hash);
  if (old) drop(p, hg_lru_entry(old, reuse_t, node));
  if (p->reuse.n >= HG_REUSE_MAX) drop(p, hg_lru_entry(p->reuse.tail, reuse_t, node));
  reuse_t *e = malloc(sizeof(*e) + kl + vbytes);
  if (e == NULL) { /* not kept: the next request asks on_request again */
    hg_buf_free(&claims);
    return;
  }
  memcpy(e->key, key, kl);
  e->vals = e->key + kl;
  char *w = e->vals;
  for (size_t i = 0; i < fz->nvary; i++) w += put_value(req, fz->vary[i], w);
  if (fz->token) put_claims(cvals, clens, fz->token->nclaims, w);
  hg_buf_free(&claims);
  e->fz = fz;
  hg__lua_frozen_retain(fz);
  e->deadline_ms = now_ms() + fz->reuse_ttl_ms;
  e->until = fz->reuse_until;
  e->node.key = e->key;
  e->node.klen = kl;
  e->node.hash = hash;
  hg_lru_insert(&p->reuse, &e->node);
}

void hg__reuse_clear(hg_policy_t *p) {
  while (p->reuse.tail) drop(p, hg_lru_entry(p->reuse.tail, reuse_t, node));
  hg_lru_free(&p->reuse);
  free(p->reuse_seen);
  p->reuse_seen = NULL;
  for (size_t i = 0; i < p->ntoken_params; i++) free(p->token_params[i]);
  p->ntoken_params = 0;
}
