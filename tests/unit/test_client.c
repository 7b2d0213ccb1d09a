/* The client address behind trusted proxies (src/http/client.c): address parsing as headers
 * write it, CIDR blocks, and the right-to-left walk over Forwarded and X-Forwarded-For. Every
 * input sits in a heap block of exactly its size, so that AddressSanitizer catches an overread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"

static int parse(const char *text, crest__addr_t *a) {
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    int rc = crest__addr_parse(copy, len, a);
    free(copy);
    return rc;
}

static void expect_addr(const crest__addr_t *a, const char *text) {
    char buf[64];
    crest__addr_format(a, buf, sizeof(buf));
    assert_string_equal(buf, text);
}

static void test_parse(void **state) {
    (void)state;
    static const struct {
        const char *in, *out;
        int family;
    } good[] = {
        {"192.0.2.1", "192.0.2.1", 4},
        {"192.0.2.1:8080", "192.0.2.1", 4},
        {"2001:db8::1", "2001:db8::1", 6},
        {"[2001:db8::1]", "2001:db8::1", 6},
        {"[2001:db8::1]:443", "2001:db8::1", 6},
        {"::1", "::1", 6},
        {"::ffff:192.0.2.7", "192.0.2.7", 4}, /* a dual-stack proxy's view of an IPv4 client */
        {"[::ffff:192.0.2.7]:1", "192.0.2.7", 4},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        crest__addr_t a;
        assert_int_equal(parse(good[i].in, &a), 0);
        assert_int_equal(a.family, good[i].family);
        expect_addr(&a, good[i].out);
    }
    static const char *const bad[] = {
        "",
        "unknown",
        "_hidden",
        "192.0.2.1:",
        "192.0.2.1:x",
        "192.0.2",
        "192.0.2.256",
        "[192.0.2.1]",
        "[::1",
        "[::1]x",
        "[::1]:",
        "::1:80:x:y:z",
        "1.2.3.4:123456",
        " 192.0.2.1",
        "2001:db8::1::2",
        "192.0.2.1 ",
        "aaaa:bbbb:cccc:dddd:eeee:ffff:0000:1111:2222:3333:4444:5555",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        crest__addr_t a;
        assert_int_equal(parse(bad[i], &a), CREST_EINVAL);
    }
}

/* Trusted blocks come from crest_app_trust_proxy on a real app. */
static crest_app_t *app_with(const char *const *proxies, size_t n) {
    crest_app_t *app = crest_app_new(NULL);
    assert_non_null(app);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(crest_app_trust_proxy(app, proxies[i]), 0);
    return app;
}

static void test_trust_proxy(void **state) {
    (void)state;
    crest_app_t *app = crest_app_new(NULL);
    assert_non_null(app);
    static const char *const bad[] = {
        "",           "10.0.0.0/33",  "::/129",       "10.0.0.0/",   "10.0.0.0/x",   "[::1]",
        "1.2.3.4:80", "host.example", "10.0.0.0/8/8", "10.0.0.0/-1", "10.0.0.0/0008"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(crest_app_trust_proxy(app, bad[i]), CREST_EINVAL);
    assert_int_equal(crest_app_trust_proxy(app, NULL), CREST_EINVAL);
    assert_int_equal(app->nproxies, 0);
    assert_int_equal(crest_app_trust_proxy(app, "10.1.2.3/8"), 0); /* host bits dropped */
    assert_int_equal(crest_app_trust_proxy(app, "2001:db8::/32"), 0);
    assert_int_equal(crest_app_trust_proxy(app, "192.0.2.9"), 0);
    assert_int_equal(crest_app_trust_proxy(app, "0.0.0.0/0"), 0);
    assert_int_equal(app->nproxies, 4);
    assert_int_equal(app->proxies[0].bits, 96 + 8);
    assert_int_equal(app->proxies[0].ip[12], 10);
    assert_int_equal(app->proxies[0].ip[13], 0);
    assert_int_equal(app->proxies[1].bits, 32);
    assert_int_equal(app->proxies[2].bits, 128);
    crest__addr_t a;
    assert_int_equal(parse("10.200.0.1", &a), 0);
    assert_true(crest__cidr_match(app->proxies, 1, &a));
    assert_int_equal(parse("11.0.0.1", &a), 0);
    assert_false(crest__cidr_match(app->proxies, 1, &a));
    assert_int_equal(parse("2001:db8:ffff::1", &a), 0);
    assert_true(crest__cidr_match(app->proxies + 1, 1, &a));
    assert_int_equal(parse("2001:db9::1", &a), 0);
    assert_false(crest__cidr_match(app->proxies + 1, 1, &a));
    assert_int_equal(parse("192.0.2.9", &a), 0);
    assert_true(crest__cidr_match(app->proxies + 2, 1, &a));
    assert_int_equal(parse("192.0.2.8", &a), 0);
    assert_false(crest__cidr_match(app->proxies + 2, 1, &a));
    /* 0.0.0.0/0 is every IPv4 address (as mapped IPv6), not every IPv6 one. */
    assert_true(crest__cidr_match(app->proxies + 3, 1, &a));
    assert_int_equal(parse("2001:db8::1", &a), 0);
    assert_false(crest__cidr_match(app->proxies + 3, 1, &a));
    crest_app_free(app);
}

/* pick(trusted, peer, "Name", "value", ... NULL) -> the client as text. Each header value is a
 * heap block of its exact size. */
static void expect_pick(const char *const *trusted, size_t ntrusted, const char *peer,
                        const char *want, ...) {
    crest_app_t *app = app_with(trusted, ntrusted);
    crest_header_t hs[8];
    size_t n = 0;
    va_list ap;
    va_start(ap, want);
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        size_t len = strlen(value);
        char *v = malloc(len ? len : 1);
        assert_non_null(v);
        memcpy(v, value, len);
        hs[n++] = (crest_header_t){{name, strlen(name)}, {v, len}};
    }
    va_end(ap);
    crest__addr_t p, out;
    assert_int_equal(parse(peer, &p), 0);
    crest__client_pick(app->proxies, app->nproxies, &p, hs, n, &out);
    expect_addr(&out, want);
    for (size_t i = 0; i < n; i++)
        free((void *)hs[i].value.ptr);
    crest_app_free(app);
}

static void test_pick(void **state) {
    (void)state;
    static const char *const lo[] = {"127.0.0.1"};
    static const char *const lo_net[] = {"127.0.0.1", "10.0.0.0/8"};
    static const char *const v6[] = {"::1/128"};
    /* No trusted proxy, or a peer that is not one: the headers are ignored. */
    expect_pick(NULL, 0, "127.0.0.1", "127.0.0.1", "X-Forwarded-For", "203.0.113.5", NULL);
    expect_pick(lo, 1, "192.0.2.1", "192.0.2.1", "X-Forwarded-For", "203.0.113.5", NULL);
    expect_pick(lo, 1, "192.0.2.1", "192.0.2.1", "Forwarded", "for=203.0.113.5", NULL);
    /* A trusted peer without the headers is the client itself. */
    expect_pick(lo, 1, "127.0.0.1", "127.0.0.1", NULL);
    /* Right-most untrusted: what the client wrote on the left cannot be believed. */
    expect_pick(lo, 1, "127.0.0.1", "203.0.113.5", "X-Forwarded-For", "6.6.6.6, 203.0.113.5", NULL);
    expect_pick(lo_net, 2, "127.0.0.1", "203.0.113.5", "X-Forwarded-For",
                "6.6.6.6,203.0.113.5 ,10.0.0.7, 10.9.9.9", NULL);
    /* Every hop trusted: the left-most is the client as far as anyone knows. */
    expect_pick(lo_net, 2, "127.0.0.1", "10.0.0.1", "X-Forwarded-For", "10.0.0.1, 10.0.0.2", NULL);
    /* Not an address: the walk ends at the trusted hop that wrote it. */
    expect_pick(lo_net, 2, "127.0.0.1", "10.0.0.2", "X-Forwarded-For",
                "203.0.113.5, unknown, 10.0.0.2", NULL);
    expect_pick(lo, 1, "127.0.0.1", "127.0.0.1", "X-Forwarded-For", "garbage", NULL);
    /* Several X-Forwarded-For lines are one list, in order. */
    expect_pick(lo_net, 2, "127.0.0.1", "198.51.100.1", "X-Forwarded-For", "6.6.6.6",
                "x-forwarded-for", "198.51.100.1, 10.1.1.1", NULL);
    /* Ports are dropped. */
    expect_pick(lo, 1, "127.0.0.1", "203.0.113.5", "X-Forwarded-For", "203.0.113.5:5555", NULL);
    /* Forwarded (RFC 7239): for= of each element, quoted IPv6 with a port, other pairs ignored;
     * it wins over X-Forwarded-For. */
    expect_pick(lo, 1, "127.0.0.1", "2001:db8:cafe::17", "Forwarded",
                "for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\"",
                "X-Forwarded-For", "198.51.100.9", NULL);
    expect_pick(lo_net, 2, "127.0.0.1", "192.0.2.60", "Forwarded",
                "for=192.0.2.60;proto=http, for=\"10.0.0.3\";by=\"_proxy\"", NULL);
    /* A Forwarded element without for= ends the walk at the hop that sent it. */
    expect_pick(lo, 1, "127.0.0.1", "127.0.0.1", "Forwarded", "for=192.0.2.60, proto=https", NULL);
    /* A Forwarded that names nobody: X-Forwarded-For is used. */
    expect_pick(lo, 1, "127.0.0.1", "198.51.100.9", "Forwarded", "proto=https;host=a.example",
                "X-Forwarded-For", "198.51.100.9", NULL);
    /* Obfuscated and unknown identifiers are not addresses. */
    expect_pick(lo, 1, "127.0.0.1", "127.0.0.1", "Forwarded", "for=unknown", NULL);
    expect_pick(lo, 1, "127.0.0.1", "127.0.0.1", "Forwarded", "for=\"_gazonk\"", NULL);
    /* A quoted value with an escape or without its closing quote is not an address either. */
    expect_pick(lo, 1, "127.0.0.1", "127.0.0.1", "Forwarded", "for=\"1.2.3.\\4\"", NULL);
    expect_pick(lo, 1, "127.0.0.1", "127.0.0.1", "Forwarded", "for=\"1.2.3.4", NULL);
    /* IPv6 peers and blocks. */
    expect_pick(v6, 1, "::1", "2001:db8::5", "X-Forwarded-For", "2001:db8::5", NULL);
    expect_pick(v6, 1, "::2", "::2", "X-Forwarded-For", "2001:db8::5", NULL);
}

/* A list longer than the walk keeps (32 hops): its right end still decides. */
static void test_long_list(void **state) {
    (void)state;
    static const char *const net[] = {"127.0.0.1", "10.0.0.0/8"};
    char list[2048] = "203.0.113.1";
    for (int i = 0; i < 100; i++) {
        char hop[24];
        snprintf(hop, sizeof(hop), ", 10.0.%d.%d", i / 200, i % 200 + 1);
        strcat(list, hop);
    }
    /* All 100 right-most hops trusted: the walk ends at the left end of what it kept. */
    expect_pick(net, 2, "127.0.0.1", "10.0.0.69", "X-Forwarded-For", list, NULL);
    strcat(list, ", 198.51.100.3, 10.0.0.250");
    expect_pick(net, 2, "127.0.0.1", "198.51.100.3", "X-Forwarded-For", list, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_trust_proxy),
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_long_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
