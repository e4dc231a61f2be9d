#!/usr/bin/env python3
"""Random differential test: the same random commands go to a stock redis-server and to
shardis over raw RESP (one connection each, RESP3 with RESP3=1 in the environment), and the
replies must match; unordered replies (SMEMBERS, HGETALL...) are compared sorted and
positive TTLs as "positive". Keys are few (six spread over the shards, three sharing a
hash tag) and members and numbers come from small hostile pools, so wrong types, edge
values and cross-shard commands come up often.

Usage: tools/difffuzz.py REDIS_PORT SHARDIS_PORT [N] [SEED] [SKIP,COMMANDS]

On a mismatch it prints the command, both replies and the last commands that named its
keys (HN=40 in the environment for more), copies Redis's keys over (DUMP/RESTORE) and goes
on; it stops after 16 and exits 1 if any. tests/differential_random.rs runs it bounded.
Found so far: INCRBYFLOAT's type check order, SORT reading "" as 0, SORT's zset
conversion (session 18)."""
import os, random, socket, sys

def enc(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")
    def cmd(self, args):
        self.s.sendall(enc(args))
        return self.read()
    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-", b":"):
            return (t, rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return (b"$", None)
            d = self.f.read(n + 2)
            return (b"$", d[:-2])
        if t in (b"*", b"~", b">"):
            n = int(rest)
            if n < 0:
                return (t, None)
            return (t, [self.read() for _ in range(n)])
        if t == b"%" or t == b"|":
            n = int(rest)
            return (t, [(self.read(), self.read()) for _ in range(n)])
        if t in (b"_",):
            return (t, None)
        if t in (b",", b"#", b"("):
            return (t, rest)
        if t in (b"=", b"!"):
            n = int(rest)
            d = self.f.read(n + 2)
            return (t, d[:-2])
        raise Exception("bad reply %r" % line)

KEYS = ["k%d" % i for i in range(6)] + ["{t}a", "{t}b", "{t}c"]
LEXKEYS = ["lex1", "lex2"]
# Streams get keys of their own (and sometimes any key, for the type errors).
SKEYS = ["s1", "s2", "{t}s"]
MEMBERS = ["a", "b", "c", "d", "1", "2", "-1", "3.5", "x" * 70, ""]
NUMS = ["0", "1", "-1", "2", "10", "-5", "100", "3", "inf", "-inf", "+inf", "1.5", "abc", "9223372036854775807", "-9223372036854775808", "(1", "[a", "-", "+", "(2"]

SCRIPTS = [
    "return redis.call('GET', KEYS[1])",
    "return redis.call('INCR', KEYS[1])",
    "return redis.pcall('INCR', KEYS[1])",
    "return redis.call('SET', KEYS[1], ARGV[1])",
    "return redis.call('LPUSH', KEYS[1], ARGV[1])",
    "return redis.pcall('LPUSH', KEYS[1], ARGV[1])",
    "return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')",
    "return redis.call('TYPE', KEYS[1])",
    "return redis.call('EXISTS', KEYS[1])",
    "local v = redis.call('GET', KEYS[1]); if v then return tonumber(v) end; return -1",
    "return redis.call('NOSUCH', KEYS[1])",
    "return redis.pcall('NOSUCH', KEYS[1])",
    "return redis.call('GET')",
    "return redis.call('SET', KEYS[1])",
    "return redis.call('ZADD', KEYS[1], ARGV[1], 'm')",
    "return redis.call('INCRBYFLOAT', KEYS[1], '1.5')",
]

# Stream IDs: explicit ones (`*` makes each server its own ID), the special forms, bad ones.
SIDS = ["1-1", "1-2", "2", "2-*", "3-0", "5-5", "0-1", "0", "99-99", "abc", "1-*"]
RIDS = ["-", "+", "0", "1-1", "(1-1", "2-0", "(2", "5", "99", "x", "("]

def K(r): return r.choice(KEYS)
def SID(r): return r.choice(SIDS)
def SK(r): return r.choice(SKEYS * 6 + KEYS)
def RID(r): return r.choice(RIDS)
def M(r): return r.choice(MEMBERS)
def N(r): return r.choice(NUMS)
def I(r): return str(r.choice([0, 1, 2, -1, -2, 3, 5, 10, -100, 100]))

def gen(r):
    c = r.randrange(100)
    k = K(r)
    choices = [
        lambda: ["SET", k, M(r)] + r.choice([[], ["NX"], ["XX"], ["GET"], ["KEEPTTL"], ["EX", "100000"], ["NX", "GET"], ["XX", "GET"], ["EX", "0"], ["PX", "-1"]]),
        lambda: ["GET", k],
        lambda: ["GETDEL", k],
        lambda: ["GETSET", k, M(r)],
        lambda: ["APPEND", k, M(r)],
        lambda: ["STRLEN", k],
        lambda: ["INCR", k],
        lambda: ["INCRBY", k, N(r)],
        lambda: ["DECRBY", k, N(r)],
        lambda: ["INCRBYFLOAT", k, N(r)],
        lambda: ["SETRANGE", k, I(r), M(r)],
        lambda: ["GETRANGE", k, I(r), I(r)],
        lambda: ["MSET", K(r), M(r), K(r), M(r)],
        lambda: ["MGET", K(r), K(r), K(r)],
        lambda: ["MSETNX", K(r), M(r), K(r), M(r)],
        lambda: ["SETNX", k, M(r)],
        lambda: ["LCS", "{t}a", "{t}b"] + r.choice([[], ["LEN"], ["IDX"], ["IDX", "MINMATCHLEN", "1", "WITHMATCHLEN"]]),
        lambda: [r.choice(["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"]), k, M(r), M(r)],
        lambda: [r.choice(["LPOP", "RPOP"]), k] + r.choice([[], [I(r)]]),
        lambda: ["LRANGE", k, I(r), I(r)],
        lambda: ["LINDEX", k, I(r)],
        lambda: ["LSET", k, I(r), M(r)],
        lambda: ["LINSERT", k, r.choice(["BEFORE", "AFTER", "MIDDLE"]), M(r), M(r)],
        lambda: ["LREM", k, I(r), M(r)],
        lambda: ["LTRIM", k, I(r), I(r)],
        lambda: ["LPOS", k, M(r)] + r.choice([[], ["RANK", I(r)], ["COUNT", I(r)], ["MAXLEN", I(r)], ["RANK", "-1", "COUNT", "0"]]),
        lambda: ["LMOVE", K(r), K(r), r.choice(["LEFT", "RIGHT"]), r.choice(["LEFT", "RIGHT"])],
        lambda: ["LLEN", k],
        lambda: ["LMPOP", "2", K(r), K(r), r.choice(["LEFT", "RIGHT"])] + r.choice([[], ["COUNT", I(r)]]),
        lambda: ["HSET", k, M(r), M(r)] + r.choice([[], [M(r), M(r)]]),
        lambda: ["HGET", k, M(r)],
        lambda: ["HDEL", k, M(r), M(r)],
        lambda: ["HGETALL", k],
        lambda: ["HINCRBY", k, M(r), N(r)],
        lambda: ["HINCRBYFLOAT", k, M(r), N(r)],
        lambda: ["HKEYS", k],
        lambda: ["HVALS", k],
        lambda: ["HLEN", k],
        lambda: ["HMGET", k, M(r), M(r)],
        lambda: ["HSETNX", k, M(r), M(r)],
        lambda: ["HSTRLEN", k, M(r)],
        lambda: ["SADD", k, M(r), M(r)],
        lambda: ["SREM", k, M(r)],
        lambda: ["SMEMBERS", k],
        lambda: ["SISMEMBER", k, M(r)],
        lambda: ["SMISMEMBER", k, M(r), M(r)],
        lambda: ["SCARD", k],
        lambda: [r.choice(["SINTER", "SUNION", "SDIFF"]), "{t}a", "{t}b"],
        lambda: [r.choice(["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]), "{t}c", "{t}a", "{t}b"],
        lambda: ["SINTERCARD", "2", "{t}a", "{t}b"] + r.choice([[], ["LIMIT", I(r)]]),
        lambda: ["SMOVE", K(r), K(r), M(r)],
        lambda: ["ZADD", k] + r.choice([[], ["NX"], ["XX"], ["GT"], ["LT"], ["CH"], ["INCR"], ["XX", "CH"], ["NX", "GT"]]) + [N(r), M(r)],
        lambda: ["ZINCRBY", k, N(r), M(r)],
        lambda: ["ZRANGE", k, N(r), N(r)] + r.choice([[], ["WITHSCORES"], ["BYSCORE"], ["REV"], ["BYSCORE", "REV", "LIMIT", I(r), I(r)], ["BYSCORE", "WITHSCORES", "LIMIT", "0", "2"]]),
        lambda: ["ZRANGEBYSCORE", k, N(r), N(r)] + r.choice([[], ["WITHSCORES"], ["LIMIT", I(r), I(r)]]),
        lambda: ["ZREVRANGEBYSCORE", k, N(r), N(r)],
        # Lex ranges are only defined over equal scores: their own keys, always score 0.
        lambda: ["ZADD", r.choice(LEXKEYS), "0", M(r), "0", M(r)],
        lambda: [r.choice(["ZRANGEBYLEX", "ZREVRANGEBYLEX", "ZLEXCOUNT", "ZREMRANGEBYLEX"]), r.choice(LEXKEYS), N(r), N(r)] + r.choice([[], [], ["LIMIT", I(r), I(r)]]),
        lambda: ["ZRANGE", r.choice(LEXKEYS), N(r), N(r), "BYLEX"] + r.choice([[], ["REV"], ["LIMIT", "0", I(r)]]),
        lambda: ["ZREVRANGE", k, I(r), I(r), "WITHSCORES"],
        lambda: [r.choice(["ZRANK", "ZREVRANK"]), k, M(r)],
        lambda: ["ZSCORE", k, M(r)],
        lambda: ["ZMSCORE", k, M(r), M(r)],
        lambda: ["ZREM", k, M(r)],
        lambda: ["ZREMRANGEBYSCORE", k, N(r), N(r)],
        lambda: ["ZREMRANGEBYRANK", k, I(r), I(r)],
        lambda: ["ZCOUNT", k, N(r), N(r)],
        lambda: [r.choice(["ZPOPMIN", "ZPOPMAX"]), k] + r.choice([[], [I(r)]]),
        lambda: [r.choice(["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"]), "{t}c", "2", "{t}a", "{t}b"] + r.choice([[], ["WEIGHTS", N(r), N(r)], ["AGGREGATE", r.choice(["MIN", "MAX", "SUM"])]]),
        lambda: [r.choice(["ZUNION", "ZINTER", "ZDIFF"]), "2", "{t}a", "{t}b"] + r.choice([[], ["WITHSCORES"]]),
        lambda: ["ZRANGESTORE", "{t}c", "{t}a", I(r), I(r)],
        lambda: ["ZCARD", k],
        lambda: ["ZMPOP", "2", K(r), K(r), r.choice(["MIN", "MAX"])] + r.choice([[], ["COUNT", I(r)]]),
        lambda: ["DEL", K(r), K(r)],
        lambda: ["EXISTS", K(r), K(r)],
        lambda: ["TYPE", k],
        lambda: [r.choice(["RENAME", "RENAMENX"]), K(r), K(r)],
        lambda: ["COPY", K(r), K(r)] + r.choice([[], ["REPLACE"]]),
        lambda: ["EXPIRE", k, r.choice(["100000", "200000", "-1", "0", "abc"])] + r.choice([[], ["NX"], ["XX"], ["GT"], ["LT"]]),
        lambda: ["PERSIST", k],
        lambda: ["TTL", k],
        lambda: ["SETBIT", k, r.choice(["0", "7", "100", "-1"]), r.choice(["0", "1", "2"])],
        lambda: ["GETBIT", k, I(r)],
        lambda: ["BITCOUNT", k] + r.choice([[], [I(r), I(r)], [I(r), I(r), r.choice(["BIT", "BYTE"])]]),
        lambda: ["BITPOS", k, r.choice(["0", "1"])] + r.choice([[], [I(r)], [I(r), I(r)]]),
        lambda: ["BITOP", r.choice(["AND", "OR", "XOR", "NOT"]), "{t}c", "{t}a"] + r.choice([[], ["{t}b"]]),
        lambda: ["BITFIELD", k, "INCRBY", r.choice(["u8", "i5", "u63", "i64"]), I(r), N(r)],
        lambda: ["PFADD", k, M(r), M(r)],
        lambda: ["PFCOUNT", k],
        lambda: ["SORT", k] + r.choice([[], ["ALPHA"], ["DESC", "ALPHA"], ["LIMIT", "0", "2", "ALPHA"]]),
        lambda: ["DBSIZE"],
        lambda: ["OBJECT", "ENCODING", k],
        lambda: ["HRANDFIELD", k, "0"],
        lambda: ["GETEX", k] + r.choice([[], ["PERSIST"], ["EX", "100000"], ["PX", "0"], ["EX", "abc"], ["PERSIST", "EX", "1000"]]),
        lambda: ["SET", k, M(r)] + r.choice([["EXAT", "99999999999"], ["EX", "100000", "PX", "100000"], ["EX"], ["NX", "XX"], ["KEEPTTL", "EX", "500000"], ["GET", "NX"]]),
        lambda: [r.choice(["SETEX", "PSETEX"]), k, r.choice(["0", "-1", "abc", "100000", "1.5", "9223372036854775807"]), M(r)],
        lambda: [r.choice(["DECR", "INCR"]), k],
        lambda: ["SUBSTR", k, I(r), I(r)],
        lambda: ["GEOADD", k] + r.choice([[], ["NX"], ["XX"], ["CH"]]) + [r.choice(["13.36", "200", "-73.9", "abc"]), r.choice(["38.1", "40.7", "90", "0"]), M(r)],
        lambda: ["GEOPOS", k, M(r), M(r)],
        lambda: ["GEODIST", k, M(r), M(r)] + r.choice([[], ["km"], ["mi"], ["ft"], ["xx"]]),
        lambda: ["GEOHASH", k, M(r)],
        lambda: ["GEOSEARCH", k, "FROMLONLAT", "13", "38", "BYRADIUS", r.choice(["100", "5000", "-1"]), "km"] + r.choice([[], ["ASC"], ["WITHCOORD", "WITHDIST"], ["COUNT", "1"], ["COUNT", "0"]]),
        lambda: ["PFMERGE", "{t}c", "{t}a", "{t}b"],
        lambda: ["BITFIELD", k] + r.choice([["GET", "u8", "0"], ["SET", "i8", "#1", "-100"], ["OVERFLOW", "FAIL", "INCRBY", "u2", "0", "5"], ["OVERFLOW", "SAT", "INCRBY", "i8", "0", "300"], ["GET", "u64", "0"], ["GET", "i65", "0"]]),
        lambda: ["BITFIELD_RO", k, "GET", "u4", I(r)],
        lambda: ["HSET", k] + [M(r) for _ in range(r.choice([1, 3]))],
        lambda: ["ZADD", k, N(r), M(r), N(r), M(r)],
        lambda: ["ZRANGE", k, "0", "-1", "WITHSCORES"],
        lambda: ["ZSCORE", k, M(r)],
        lambda: ["ZINCRBY", k, r.choice(["1e308", "-1e308", "nan", "0.1"]), M(r)],
        lambda: ["LINDEX", k, r.choice(["9223372036854775807", "-9223372036854775808", "x"])],
        lambda: ["EXPIRETIME", k],
        lambda: ["PEXPIRETIME", k],
        lambda: ["EXPIREAT", k, r.choice(["1", "99999999999", "-5"])] + r.choice([[], ["NX"], ["GT"]]),
        lambda: ["TOUCH", K(r), K(r)],
        lambda: ["UNLINK", K(r)],
        lambda: ["LPOP", k, r.choice(["0", "-1", "abc"])],
        lambda: ["SPOP", k, "0"],
        lambda: ["SRANDMEMBER", k, "0"],
        lambda: ["ZRANDMEMBER", k, "0"],
        lambda: ["STRLEN", k],
        lambda: ["ECHO", M(r)],
        lambda: ["EXISTS", k],
        lambda: ["HEXISTS", k, M(r)],
        lambda: ["SMOVE", k, k, M(r)],
        lambda: ["LMOVE", k, k, "LEFT", "RIGHT"],
        lambda: ["RENAME", k, k],
        lambda: ["COPY", k, k],
        # Bigger collections, past the listpack/intset limits (128 entries).
        lambda: ["SADD", k] + [str(r.randrange(300)) for _ in range(r.choice([10, 140]))],
        lambda: ["SADD", k] + ["m%d" % r.randrange(300) for _ in range(r.choice([10, 140]))],
        lambda: ["ZADD", k] + sum([[str(r.randrange(50)), "m%d" % r.randrange(300)] for _ in range(r.choice([10, 140]))], []),
        lambda: ["HSET", k] + sum([["f%d" % r.randrange(300), str(r.randrange(9))] for _ in range(r.choice([10, 140]))], []),
        lambda: ["RPUSH", k] + ["e%d" % r.randrange(300) for _ in range(r.choice([10, 140]))],
        lambda: ["ZRANGE", k, str(r.randrange(-150, 150)), str(r.randrange(-150, 150))] + r.choice([[], ["WITHSCORES"], ["REV"]]),
        lambda: ["ZRANGEBYSCORE", k, str(r.randrange(-5, 50)), r.choice(["+inf", "(30", "10"]), "LIMIT", str(r.randrange(0, 20)), str(r.randrange(-1, 20))],
        lambda: ["LRANGE", k, str(r.randrange(-150, 150)), str(r.randrange(-150, 150))],
        lambda: ["SINTERCARD", "2", K(r), K(r)],
        lambda: ["ZCOUNT", k, str(r.randrange(-5, 50)), str(r.randrange(-5, 50))],
        lambda: ["ZRANK", k, "m%d" % r.randrange(300)],
        lambda: ["SISMEMBER", k, str(r.randrange(300))],
        # Blocking forms with a short timeout: at once when there is data, nil after the
        # timeout when not (no other client here to serve them). Rare: Redis checks
        # timeouts 10 times a second, so each empty one costs 100 ms there.
        lambda: r.choice([
            [r.choice(["BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX"]), K(r), K(r), r.choice(["0.001", "-1", "abc"])],
            ["BLMOVE", K(r), K(r), r.choice(["LEFT", "RIGHT"]), r.choice(["LEFT", "RIGHT"]), "0.001"],
            ["BRPOPLPUSH", K(r), K(r), "0.001"],
            [r.choice(["BLMPOP", "BZMPOP"]), "0.001", "2", K(r), K(r), r.choice(["LEFT", "MIN", "MAX", "RIGHT"])] + r.choice([[], ["COUNT", "2"]]),
        ]) if r.randrange(4) == 0 else ["LLEN", k],
        # Streams: explicit IDs, trimming, groups and their pending entries.
        lambda: ["XADD", SK(r)] + r.choice([[], [], ["NOMKSTREAM"], ["MAXLEN", I(r)], ["MAXLEN", "~", "1"], ["MINID", SID(r)], ["MAXLEN", "=", "2", "LIMIT", "1"]]) + [SID(r), M(r), M(r)],
        lambda: ["XLEN", SK(r)],
        lambda: [r.choice(["XRANGE", "XREVRANGE"]), SK(r), RID(r), RID(r)] + r.choice([[], ["COUNT", I(r)]]),
        lambda: ["XDEL", SK(r), SID(r), SID(r)],
        lambda: ["XTRIM", SK(r), r.choice(["MAXLEN", "MINID"]), r.choice(["", "=", "~"]) or "=", r.choice(["0", "1", "2-0", "3"])],
        lambda: ["XGROUP", "CREATE", SK(r), "g", r.choice(["0", "$", "1-1"])] + r.choice([[], ["MKSTREAM"], ["ENTRIESREAD", I(r)]]),
        lambda: ["XGROUP", r.choice(["SETID", "DESTROY", "CREATECONSUMER", "DELCONSUMER"]), SK(r), r.choice(["g", "g2"])] + r.choice([[r.choice(["0", "$", "c1"])], ["c2"], []]),
        lambda: ["XREADGROUP", "GROUP", "g", r.choice(["c1", "c2"])] + r.choice([[], ["COUNT", "1"], ["NOACK"]]) + ["STREAMS", SK(r), r.choice([">", ">", "0", "1-1", "$"])],
        lambda: ["XREAD"] + r.choice([[], ["COUNT", "1"]]) + ["STREAMS", SK(r), r.choice(["0", "$", "1-1", ">"])],
        lambda: ["XACK", SK(r), "g", SID(r), SID(r)],
        lambda: ["XPENDING", SK(r), "g"] + r.choice([[], ["-", "+", "10"], ["-", "+", "10", "c1"], ["IDLE", "0", "-", "+", "5"]]),
        lambda: ["XCLAIM", SK(r), "g", r.choice(["c1", "c3"]), "0", SID(r), SID(r)] + r.choice([[], ["JUSTID"], ["FORCE", "JUSTID"], ["RETRYCOUNT", "7", "JUSTID"], ["LASTID", "9-9", "JUSTID"]]),
        lambda: ["XAUTOCLAIM", SK(r), "g", r.choice(["c1", "c4"]), "0", r.choice(["0", "1-1", "(1-1"])] + r.choice([[], ["COUNT", "1"], ["JUSTID"]]),
        lambda: ["XINFO", r.choice(["GROUPS", "STREAM", "CONSUMERS"]), SK(r)] + r.choice([[], ["g"]]),
        lambda: ["XSETID", SK(r), SID(r)] + r.choice([[], ["ENTRIESADDED", I(r)], ["MAXDELETEDID", SID(r)]]),
        # Databases: the connection's SELECT carries over too.
        lambda: ["SELECT", r.choice(["0", "0", "0", "1", "2", "16", "-1", "x"])],
        lambda: ["MOVE", k, r.choice(["0", "1", "2", "16", "x"])],
        lambda: ["COPY", K(r), K(r), "DB", r.choice(["0", "1", "x", "99"])] + r.choice([[], ["REPLACE"]]),
        lambda: ["SWAPDB", r.choice(["0", "1", "2"]), r.choice(["0", "1", "x"])],
        lambda: ["EXPIRE", k, r.choice(["9223372036854775807", "9223372036854775", "-9223372036854775808", "1.5", ""])],
        lambda: ["PEXPIRE", k, r.choice(["9223372036854775807", "100000", "-1"])],
        lambda: ["SETEX", k, r.choice(["9223372036854775807", "9223372036854775", "4611686018427388"]), "v"],
        lambda: ["OBJECT", r.choice(["FREQ", "NOSUCH"]), k],
        lambda: ["ECHO"] + [M(r) for _ in range(r.choice([0, 1, 2]))],
        lambda: ["PING"] + [M(r) for _ in range(r.choice([0, 1, 2]))],
        lambda: ["STRLEN"] + [K(r) for _ in range(r.choice([0, 2]))],
        lambda: ["RENAME", K(r), K(r)],
        # Transactions: the connection's MULTI state carries over to the next commands.
        lambda: [r.choice(["MULTI", "MULTI", "EXEC", "EXEC", "DISCARD", "UNWATCH"])],
        lambda: ["WATCH", K(r)],
        # Scripts: conversions both ways, errors raised and caught, writes.
        lambda: ["EVAL", r.choice(SCRIPTS), "1", k, M(r)],
        lambda: ["EVAL", r.choice(["return 3.99", "return -0.5", "return {1, 2, {3, 'x'}, nil, 5}", "return {err='my error'}", "return {ok='fine'}", "return false", "return true", "return nil", "return 'x'", "return redis.error_reply('E custom')", "return redis.status_reply('DONE')", "return #ARGV", "return {1e20}", "return tostring(1/0)"]), "0", M(r)],
    ]
    return r.choice(choices)()

HOSTILE = ["", "-1", "0", "abc", "9223372036854775808", "-9223372036854775809", "1e400", "nan", "COUNT", "LIMIT", "WITHSCORES", "BYSCORE", "REV", "NX", "XX", "GT", "LT", "CH", "INCR", "GET", "EX", "PX", "KEEPTTL", "LEFT", "RIGHT", "{t}a", "k1"]

def mutate(r, cmd):
    """One command in ten loses its last argument, gains one, or has one replaced by a
    hostile value: argument parsing and the order of its errors. (TTLs elsewhere are long
    enough that an EX made PX still outlives the run: a key expiring between the two
    servers' copies of a command would be a false mismatch.)"""
    if r.randrange(10) or len(cmd) < 2:
        return cmd
    cmd = list(cmd)
    m = r.randrange(3)
    if m == 0:
        cmd.pop()
    elif m == 1:
        cmd.insert(r.randrange(1, len(cmd) + 1), r.choice(HOSTILE))
    else:
        cmd[r.randrange(1, len(cmd))] = r.choice(HOSTILE)
    return cmd

RANDOM = ("SPOP", "SRANDMEMBER", "ZRANDMEMBER", "HRANDFIELD")

def norm(cmd, rep):
    name = cmd[0].upper()
    if name in RANDOM and rep[0] not in (b"-",):
        # A random pick: its shape only (errors stay exact).
        return (rep[0], len(rep[1]) if isinstance(rep[1], list) else rep[1] is None)
    if name in ("SMEMBERS", "SINTER", "SUNION", "SDIFF", "HKEYS", "HVALS") and rep[0] in (b"*", b"~") and rep[1] is not None:
        return (rep[0], sorted(x[1] or b"" for x in rep[1]))
    if name == "HGETALL" and rep[0] == b"%":
        return (b"%", sorted(rep[1]))
    if name == "HGETALL" and rep[0] == b"*" and rep[1]:
        v = [x[1] for x in rep[1]]
        return (b"*", sorted(zip(v[0::2], v[1::2])))
    if name in ("TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME") and rep[0] == b":" and int(rep[1]) > 0:
        return (b":", b"positive")
    if name == "XADD" and rep[0] == b"$" and any(a in ("*", "2-*", "1-*") for a in cmd[2:]):
        return (b"$", b"an id")
    if name in ("XPENDING", "XINFO") and rep[0] in (b"*", b"%") and rep[1]:
        # Idle times and the radix tree counts are each server's own.
        return strip_times(rep)
    return rep

def strip_times(rep):
    """Integers after `idle`/`radix-tree-*` keys and the third field of XPENDING rows."""
    t, v = rep
    if not isinstance(v, list):
        return rep
    out, skip = [], False
    for i, x in enumerate(v):
        if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple):
            # A RESP3 map entry: (key, value).
            k, val = x
            timed = k[0] in (b"$", b"+") and k[1] in (b"idle", b"radix-tree-keys", b"radix-tree-nodes")
            out.append((k, (b":", b"t") if timed else strip_times(val)))
            continue
        if skip:
            out.append((b":", b"t")); skip = False; continue
        if x[0] in (b"$", b"+") and x[1] in (b"idle", b"radix-tree-keys", b"radix-tree-nodes"):
            skip = True
        out.append(strip_times(x))
    if len(v) == 4 and all(isinstance(x, tuple) for x in v) and v[2][0] == b":" and v[0][0] == b"$" and v[1][0] == b"$":
        out[2] = (b":", b"t")
    return (t, out)

def resync(a, b, keys):
    """Copies Redis's keys (value and TTL) to shardis."""
    for k in keys:
        d = a.cmd(["DUMP", k])
        t = a.cmd(["PEXPIRETIME", k])
        b.cmd(["DEL", k])
        if d[1] is not None and t[0] == b":":
            ttl = int(t[1]) if int(t[1]) > 0 else 0
            b.cmd(["RESTORE", k, str(ttl), d[1]] + (["ABSTTL"] if ttl else []))

def main():
    rp, sp = int(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    r = random.Random(seed)
    a, b = Conn(rp), Conn(sp)
    a.cmd(["FLUSHALL"]); b.cmd(["FLUSHALL"])
    if os.environ.get("RESP3"):
        a.cmd(["HELLO", "3"]); b.cmd(["HELLO", "3"])
    bad = 0
    hist = []
    queued = None
    skip = set(sys.argv[5].split(",")) if len(sys.argv) > 5 else set()
    mutating = bool(os.environ.get("MUTATE"))
    for i in range(n):
        cmd = gen(r)
        if mutating:
            cmd = mutate(r, cmd)
        if cmd[0] in skip:
            continue
        hist.append((i, cmd))
        ra, rb = a.cmd(cmd), b.cmd(cmd)
        name = cmd[0].upper()
        if name == "MULTI" and ra == (b"+", b"OK"):
            queued = []
        elif queued is not None and ra == (b"+", b"QUEUED"):
            queued.append(cmd)
        elif name == "EXEC" and queued is not None:
            # Each result normalised as its command's reply would be.
            if ra[0] == b"*" and rb[0] == b"*" and ra[1] and rb[1] and len(ra[1]) == len(rb[1]) == len(queued):
                ra = (b"*", [norm(q, v) for q, v in zip(queued, ra[1])])
                rb = (b"*", [norm(q, v) for q, v in zip(queued, rb[1])])
            queued = None
        elif name == "DISCARD":
            queued = None
        if name == "SPOP" and queued is None and len(cmd) > 1 and ra[0] != b"-":
            # A random pop leaves different members behind: copy Redis's key over.
            resync(a, b, [cmd[1]])
        x, y = norm(cmd, ra), norm(cmd, rb)
        if x != y:
            bad += 1
            print("#%d %s\n  redis:   %r\n  shardis: %r" % (i, cmd, x, y))
            keys = [c for c in cmd[1:] if c in KEYS or c in LEXKEYS or c in SKEYS]
            rel = [h for h in hist[:-1] if any(k in h[1][1:] for k in keys)][-int(__import__("os").environ.get("HN","6")):]
            for h in rel:
                print("     before #%d %s" % h)
            if bad > 15:
                break
            # resync state (outside any transaction)
            if queued is not None or name == "MULTI":
                a.cmd(["DISCARD"]); b.cmd(["DISCARD"])
                queued = None
            resync(a, b, KEYS + LEXKEYS + SKEYS)
    print("done", n, "mismatches", bad)
    sys.exit(1 if bad else 0)

main()
