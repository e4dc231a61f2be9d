use super::treap::{Treap, NIL};
use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn z(pairs: &[(f64, &str)]) -> ZSet {
    let mut z = ZSet::new();
    for &(s, m) in pairs {
        z.add(s, b(m), ZAddFlags::default()).unwrap();
    }
    z
}

fn members(v: Vec<(Bytes, f64)>) -> Vec<String> {
    v.into_iter()
        .map(|(m, _)| String::from_utf8(m.to_vec()).unwrap())
        .collect()
}

fn sr(min: &str, max: &str) -> ScoreRange {
    parse_score_range(min.as_bytes(), max.as_bytes()).unwrap()
}

fn lr(min: &str, max: &str) -> LexRange {
    parse_lex_range(min.as_bytes(), max.as_bytes()).unwrap()
}

fn big(n: usize) -> ZSet {
    let mut z = ZSet::new();
    for i in 0..n {
        z.add(i as f64, b(&format!("m{i:04}")), ZAddFlags::default())
            .unwrap();
    }
    z
}

#[test]
fn score_bounds_parse_like_redis() {
    let p = |s: &str| parse_score_bound(s.as_bytes());
    assert_eq!(
        p("(1.5"),
        Ok(ScoreBound {
            value: 1.5,
            exclusive: true
        })
    );
    assert_eq!(p("-inf").unwrap().value, f64::NEG_INFINITY);
    assert_eq!(p("+inf").unwrap().value, f64::INFINITY);
    assert_eq!(p("(+inf").unwrap().value, f64::INFINITY);
    assert_eq!(p("-INFINITY").unwrap().value, f64::NEG_INFINITY);
    // strtod quirks redis-server 7.0.15 shows: empty is 0, leading space, overflow, hex.
    assert_eq!(p("(").unwrap().value, 0.0);
    assert_eq!(p("").unwrap().value, 0.0);
    assert_eq!(p(" 1").unwrap().value, 1.0);
    assert_eq!(p("1e400").unwrap().value, f64::INFINITY);
    assert_eq!(p("0x1").unwrap().value, 1.0);
    for bad in ["((1", "abc", "nan", "(nan", "1 ", "1x", "[1"] {
        assert_eq!(p(bad), Err(err::MIN_MAX_NOT_FLOAT), "{bad}");
    }
}

#[test]
fn lex_bounds_parse_like_redis() {
    assert_eq!(parse_lex_bound(b"-"), Ok(LexBound::Min));
    assert_eq!(parse_lex_bound(b"+"), Ok(LexBound::Max));
    assert_eq!(parse_lex_bound(b"[a"), Ok(LexBound::Incl(b("a"))));
    assert_eq!(parse_lex_bound(b"(a"), Ok(LexBound::Excl(b("a"))));
    assert_eq!(parse_lex_bound(b"["), Ok(LexBound::Incl(b(""))));
    for bad in [&b""[..], b"a", b"+a", b"-a", b"{a"] {
        assert_eq!(parse_lex_bound(bad), Err(err::MIN_MAX_NOT_LEX));
    }
}

#[test]
fn zadd_flags_and_outcomes() {
    let mut s = ZSet::new();
    let f = ZAddFlags::default();
    assert_eq!(s.add(1.0, b("a"), f), Ok(ZAddOutcome::Added(1.0)));
    assert_eq!(s.add(1.0, b("a"), f), Ok(ZAddOutcome::Unchanged(1.0)));
    assert_eq!(s.add(2.0, b("a"), f), Ok(ZAddOutcome::Updated(2.0)));
    let nx = ZAddFlags { nx: true, ..f };
    assert_eq!(s.add(5.0, b("a"), nx), Ok(ZAddOutcome::Nop));
    assert_eq!(s.add(5.0, b("b"), nx), Ok(ZAddOutcome::Added(5.0)));
    let xx = ZAddFlags { xx: true, ..f };
    assert_eq!(s.add(5.0, b("c"), xx), Ok(ZAddOutcome::Nop));
    assert_eq!(s.add(3.0, b("a"), xx), Ok(ZAddOutcome::Updated(3.0)));
    let gt = ZAddFlags { gt: true, ..f };
    assert_eq!(s.add(1.0, b("a"), gt), Ok(ZAddOutcome::Nop));
    assert_eq!(s.add(3.0, b("a"), gt), Ok(ZAddOutcome::Nop));
    assert_eq!(s.add(4.0, b("a"), gt), Ok(ZAddOutcome::Updated(4.0)));
    assert_eq!(s.add(1.0, b("new"), gt), Ok(ZAddOutcome::Added(1.0)));
    let lt = ZAddFlags { lt: true, ..f };
    assert_eq!(s.add(9.0, b("a"), lt), Ok(ZAddOutcome::Nop));
    assert_eq!(s.add(0.5, b("a"), lt), Ok(ZAddOutcome::Updated(0.5)));
    let incr = ZAddFlags { incr: true, ..f };
    assert_eq!(s.add(2.0, b("a"), incr), Ok(ZAddOutcome::Updated(2.5)));
    assert_eq!(s.add(0.0, b("a"), incr), Ok(ZAddOutcome::Unchanged(2.5)));
    assert_eq!(s.add(7.0, b("fresh"), incr), Ok(ZAddOutcome::Added(7.0)));
    let incr_nx = ZAddFlags {
        incr: true,
        nx: true,
        ..f
    };
    assert_eq!(s.add(1.0, b("a"), incr_nx).unwrap().score(), None);
    let incr_gt = ZAddFlags {
        incr: true,
        gt: true,
        ..f
    };
    assert_eq!(s.add(-1.0, b("a"), incr_gt), Ok(ZAddOutcome::Nop));
    assert_eq!(s.score(b"a"), Some(2.5));
    assert_eq!(s.add(f64::NAN, b("a"), f), Err(err::ZSCORE_NAN));
    // inf + -inf is NaN: an error, nothing changes.
    s.add(f64::INFINITY, b("inf"), f).unwrap();
    assert_eq!(
        s.add(f64::NEG_INFINITY, b("inf"), incr),
        Err(err::ZSCORE_NAN)
    );
    assert_eq!(s.incr_by(b("inf"), f64::NEG_INFINITY), Err(err::ZSCORE_NAN));
    assert_eq!(s.score(b"inf"), Some(f64::INFINITY));
    assert_eq!(s.incr_by(b("x"), 1.5), Ok(1.5));
    assert_eq!(s.incr_by(b("x"), 1.5), Ok(3.0));
    // -0 is stored as 0.
    s.add(-0.0, b("zero"), f).unwrap();
    assert!(s.score(b"zero").unwrap().is_sign_positive());
}

#[test]
fn zadd_flag_validation() {
    let f = ZAddFlags::default();
    assert_eq!(f.validate(3), Ok(()));
    assert_eq!(
        ZAddFlags {
            nx: true,
            xx: true,
            ..f
        }
        .validate(1),
        Err(err::ZADD_XX_NX)
    );
    assert_eq!(
        ZAddFlags {
            gt: true,
            lt: true,
            ..f
        }
        .validate(1),
        Err(err::ZADD_GT_LT_NX)
    );
    assert_eq!(
        ZAddFlags {
            gt: true,
            nx: true,
            ..f
        }
        .validate(1),
        Err(err::ZADD_GT_LT_NX)
    );
    assert_eq!(
        ZAddFlags { incr: true, ..f }.validate(2),
        Err(err::ZADD_INCR_PAIR)
    );
    assert_eq!(
        ZAddFlags {
            incr: true,
            xx: true,
            ..f
        }
        .validate(1),
        Ok(())
    );
}

#[test]
fn order_rank_and_rank_ranges() {
    for s in [z(&[(2.0, "c"), (1.0, "b"), (1.0, "a"), (3.0, "d")]), {
        let mut s = big(200);
        for m in (0..200).map(|i| format!("m{i:04}")) {
            s.remove(m.as_bytes());
        }
        for (sc, m) in [(2.0, "c"), (1.0, "b"), (1.0, "a"), (3.0, "d")] {
            s.add(sc, b(m), ZAddFlags::default()).unwrap();
        }
        assert_eq!(s.encoding(), "skiplist");
        s
    }] {
        assert_eq!(s.len(), 4);
        assert_eq!(members(s.to_vec()), ["a", "b", "c", "d"]);
        assert_eq!(s.rank(b"a", false), Some(0));
        assert_eq!(s.rank(b"c", false), Some(2));
        assert_eq!(s.rank(b"c", true), Some(1));
        assert_eq!(s.rank(b"zz", false), None);
        assert_eq!(members(s.range_by_rank(1, 2, false)), ["b", "c"]);
        assert_eq!(members(s.range_by_rank(-2, -1, false)), ["c", "d"]);
        assert_eq!(members(s.range_by_rank(0, 1, true)), ["d", "c"]);
        assert_eq!(members(s.range_by_rank(-1, 100, true)), ["a"]);
        assert!(s.range_by_rank(3, 1, false).is_empty());
        assert!(s.range_by_rank(4, 10, false).is_empty());
    }
}

#[test]
fn score_ranges_limits_and_counts() {
    for s in [
        z(&[
            (1.0, "a"),
            (2.0, "b"),
            (2.0, "c"),
            (3.0, "d"),
            (f64::INFINITY, "e"),
        ]),
        {
            let mut s = big(150);
            for i in 0..150 {
                s.remove(format!("m{i:04}").as_bytes());
            }
            for (sc, m) in [
                (1.0, "a"),
                (2.0, "b"),
                (2.0, "c"),
                (3.0, "d"),
                (f64::INFINITY, "e"),
            ] {
                s.add(sc, b(m), ZAddFlags::default()).unwrap();
            }
            s
        },
    ] {
        assert_eq!(
            members(s.range_by_score(&sr("2", "3"), false, None)),
            ["b", "c", "d"]
        );
        assert_eq!(
            members(s.range_by_score(&sr("(2", "3"), false, None)),
            ["d"]
        );
        assert_eq!(
            members(s.range_by_score(&sr("2", "(3"), false, None)),
            ["b", "c"]
        );
        assert_eq!(
            members(s.range_by_score(&sr("-inf", "+inf"), false, None)).len(),
            5
        );
        assert_eq!(
            members(s.range_by_score(&sr("(3", "+inf"), false, None)),
            ["e"]
        );
        assert_eq!(
            members(s.range_by_score(&sr("(+inf", "+inf"), false, None)).len(),
            0
        );
        assert!(s.range_by_score(&sr("3", "2"), false, None).is_empty());
        assert!(s.range_by_score(&sr("(2", "(2"), false, None).is_empty());
        let lim = |offset, count| Some(Limit { offset, count });
        assert_eq!(
            members(s.range_by_score(&sr("-inf", "+inf"), false, lim(1, 2))),
            ["b", "c"]
        );
        assert_eq!(
            members(s.range_by_score(&sr("-inf", "+inf"), false, lim(3, -1))),
            ["d", "e"]
        );
        assert!(s
            .range_by_score(&sr("-inf", "+inf"), false, lim(-1, 2))
            .is_empty());
        assert!(s
            .range_by_score(&sr("-inf", "+inf"), false, lim(9, 2))
            .is_empty());
        assert!(s
            .range_by_score(&sr("-inf", "+inf"), false, lim(0, 0))
            .is_empty());
        // REV: the handler swaps max/min arguments into a ScoreRange.
        assert_eq!(
            members(s.range_by_score(&sr("1", "3"), true, None)),
            ["d", "c", "b", "a"]
        );
        assert_eq!(
            members(s.range_by_score(&sr("1", "3"), true, lim(1, 2))),
            ["c", "b"]
        );
        assert_eq!(s.count_in_score(&sr("2", "3")), 3);
        assert_eq!(s.count_in_score(&sr("(1", "(3")), 2);
        assert_eq!(s.count_in_score(&sr("5", "1")), 0);
        let with_scores = s.range_by_score(&sr("3", "+inf"), false, None);
        assert_eq!(with_scores[1].1, f64::INFINITY);
    }
}

#[test]
fn lex_ranges() {
    let s = z(&[(0.0, "a"), (0.0, "b"), (0.0, "c"), (0.0, "d"), (0.0, "e")]);
    assert_eq!(
        members_b(s.range_by_lex(&lr("-", "+"), false, None)),
        "abcde"
    );
    assert_eq!(
        members_b(s.range_by_lex(&lr("[b", "[d"), false, None)),
        "bcd"
    );
    assert_eq!(members_b(s.range_by_lex(&lr("(b", "(d"), false, None)), "c");
    assert_eq!(
        members_b(s.range_by_lex(&lr("(b", "+"), false, None)),
        "cde"
    );
    assert_eq!(members_b(s.range_by_lex(&lr("-", "(c"), false, None)), "ab");
    assert_eq!(members_b(s.range_by_lex(&lr("+", "-"), false, None)), "");
    assert_eq!(members_b(s.range_by_lex(&lr("[d", "[b"), false, None)), "");
    assert_eq!(
        members_b(s.range_by_lex(&lr("[b", "[d"), true, None)),
        "dcb"
    );
    let lim = Some(Limit {
        offset: 1,
        count: 1,
    });
    assert_eq!(members_b(s.range_by_lex(&lr("-", "+"), true, lim)), "d");
    assert_eq!(s.count_in_lex(&lr("[b", "(e")), 3);
    assert_eq!(s.count_in_lex(&lr("-", "+")), 5);
    assert_eq!(s.count_in_lex(&lr("[zz", "+")), 0);
}

fn members_b(v: Vec<Bytes>) -> String {
    v.into_iter()
        .map(|m| String::from_utf8(m.to_vec()).unwrap())
        .collect()
}

#[test]
fn pops_and_removals() {
    let mut s = z(&[(1.0, "a"), (2.0, "b"), (3.0, "c"), (4.0, "d"), (5.0, "e")]);
    assert_eq!(s.pop(false, 2), vec![(b("a"), 1.0), (b("b"), 2.0)]);
    assert_eq!(s.pop(true, 1), vec![(b("e"), 5.0)]);
    assert_eq!(members(s.pop(true, 10)), ["d", "c"]);
    assert!(s.pop(false, 1).is_empty());

    let mut s = big(300);
    assert_eq!(s.remove_range_by_rank(0, 9), 10);
    assert_eq!(s.remove_range_by_rank(-10, -1), 10);
    assert_eq!(s.len(), 280);
    assert_eq!(s.remove_range_by_score(&sr("(100", "110")), 10);
    assert_eq!(s.remove_range_by_score(&sr("1000", "2000")), 0);
    assert_eq!(s.remove_range_by_lex(&lr("[m0200", "(m0205")), 5);
    assert_eq!(s.len(), 265);
    assert_eq!(s.rank(b"m0010", false), Some(0));
    assert_eq!(s.rank(b"m0111", false), Some(91));
    assert_eq!(s.remove_range_by_rank(5, 1), 0);
    assert!(s.remove(b"m0010"));
    assert!(!s.remove(b"m0010"));
    assert_eq!(s.len(), 264);
}

#[test]
fn random_members_rules() {
    let mut rng = Rng::new(5);
    let s = z(&[(1.0, "a"), (2.0, "b"), (3.0, "c")]);
    assert_eq!(members(s.random_members(&mut rng, 5)), ["a", "b", "c"]);
    let two = s.random_members(&mut rng, 2);
    assert_eq!(two.len(), 2);
    assert_ne!(two[0].0, two[1].0);
    let rep = s.random_members(&mut rng, -10);
    assert_eq!(rep.len(), 10);
    for (m, sc) in rep {
        assert_eq!(s.score(&m), Some(sc));
    }
    assert!(s.random_member(&mut rng).is_some());
    assert!(ZSet::new().random_member(&mut rng).is_none());
    let bigz = big(300);
    let mut hist = HashMap::new();
    for (m, _) in bigz.random_members(&mut rng, -300_000) {
        *hist.entry(m).or_insert(0u32) += 1;
    }
    assert_eq!(hist.len(), 300);
    assert!(hist.values().all(|&c| (800..1200).contains(&c)));
}

#[test]
fn thresholds_128_and_64() {
    let mut s = big(128);
    assert_eq!(s.encoding(), "listpack");
    s.add(5.0, b("m0001"), ZAddFlags::default()).unwrap();
    assert_eq!(s.encoding(), "listpack", "updates do not convert");
    s.add(1.0, b("x"), ZAddFlags::default()).unwrap();
    assert_eq!(s.encoding(), "skiplist");
    assert_eq!(s.len(), 129);
    assert_eq!(s.score(b"m0001"), Some(5.0));
    assert_eq!(s.rank(b"x", false), Some(1));
    s.pop(false, 100);
    assert_eq!(s.encoding(), "skiplist", "never converts back");

    let mut s = z(&[(1.0, &"a".repeat(64))]);
    assert_eq!(s.encoding(), "listpack");
    s.add(2.0, b(&"a".repeat(65)), ZAddFlags::default())
        .unwrap();
    assert_eq!(s.encoding(), "skiplist");
    assert_eq!(s.len(), 2);
    assert!(s.heap_bytes() > 129);

    // Store results take the smallest form.
    assert_eq!(
        ZSet::from_pairs(big(200).to_vec().into_iter().take(128)).encoding(),
        "listpack"
    );
    assert_eq!(ZSet::from_pairs(big(129).to_vec()).encoding(), "skiplist");
    assert_eq!(
        ZSet::from_pairs([(b(&"a".repeat(65)), 1.0)]).encoding(),
        "skiplist"
    );
}

#[test]
fn union_inter_diff() {
    let a = z(&[(1.0, "a"), (2.0, "b"), (3.0, "c")]);
    let c = z(&[(10.0, "b"), (20.0, "c"), (30.0, "d")]);
    let set = Set::from_members([b("c"), b("d"), b("e")]);
    let ins = [ZInput::ZSet(&a), ZInput::ZSet(&c)];
    let u = ZSet::union(&ins, &[], Aggregate::Sum);
    assert_eq!(
        u.to_vec(),
        vec![
            (b("a"), 1.0),
            (b("b"), 12.0),
            (b("c"), 23.0),
            (b("d"), 30.0)
        ]
    );
    let u = ZSet::union(&ins, &[2.0, 0.5], Aggregate::Max);
    assert_eq!(u.score(b"b"), Some(5.0));
    assert_eq!(u.score(b"c"), Some(10.0));
    assert_eq!(u.score(b"a"), Some(2.0));
    let u = ZSet::union(
        &[ZInput::ZSet(&a), ZInput::Set(&set), ZInput::Missing],
        &[],
        Aggregate::Min,
    );
    assert_eq!(u.score(b"c"), Some(1.0));
    assert_eq!(u.score(b"e"), Some(1.0));
    assert_eq!(u.len(), 5);

    let i = ZSet::inter(&ins, &[], Aggregate::Sum);
    assert_eq!(i.to_vec(), vec![(b("b"), 12.0), (b("c"), 23.0)]);
    let i = ZSet::inter(&ins, &[1.0, -1.0], Aggregate::Min);
    assert_eq!(i.to_vec(), vec![(b("c"), -20.0), (b("b"), -10.0)]);
    let i = ZSet::inter(&[ZInput::ZSet(&c), ZInput::Set(&set)], &[], Aggregate::Sum);
    assert_eq!(i.to_vec(), vec![(b("c"), 21.0), (b("d"), 31.0)]);
    assert!(ZSet::inter(&[ZInput::ZSet(&a), ZInput::Missing], &[], Aggregate::Sum).is_empty());
    assert!(ZSet::inter(&[], &[], Aggregate::Sum).is_empty());
    assert_eq!(ZSet::intercard(&ins, 0), 2);
    assert_eq!(ZSet::intercard(&ins, 1), 1);
    assert_eq!(ZSet::intercard(&[ZInput::ZSet(&a), ZInput::Missing], 0), 0);

    let d = ZSet::diff(&[ZInput::ZSet(&a), ZInput::ZSet(&c)]);
    assert_eq!(d.to_vec(), vec![(b("a"), 1.0)]);
    let d = ZSet::diff(&[ZInput::ZSet(&c), ZInput::Set(&set)]);
    assert_eq!(d.to_vec(), vec![(b("b"), 10.0)]);
    assert!(ZSet::diff(&[ZInput::Missing, ZInput::ZSet(&a)]).is_empty());
}

#[test]
fn aggregate_infinity_rules() {
    let p = z(&[(f64::INFINITY, "x")]);
    let n = z(&[(f64::NEG_INFINITY, "x")]);
    // +inf + -inf sums to 0.
    let u = ZSet::union(&[ZInput::ZSet(&p), ZInput::ZSet(&n)], &[], Aggregate::Sum);
    assert_eq!(u.score(b"x"), Some(0.0));
    let i = ZSet::inter(&[ZInput::ZSet(&p), ZInput::ZSet(&n)], &[], Aggregate::Sum);
    assert_eq!(i.score(b"x"), Some(0.0));
    // inf * 0 weight is 0.
    let u = ZSet::union(&[ZInput::ZSet(&p)], &[0.0], Aggregate::Sum);
    assert_eq!(u.score(b"x"), Some(0.0));
    let i = ZSet::inter(
        &[ZInput::ZSet(&p), ZInput::ZSet(&n)],
        &[0.0, 1.0],
        Aggregate::Max,
    );
    assert_eq!(i.score(b"x"), Some(0.0));
    let u = ZSet::union(&[ZInput::ZSet(&p), ZInput::ZSet(&n)], &[], Aggregate::Max);
    assert_eq!(u.score(b"x"), Some(f64::INFINITY));
}

/// The treap against a naive sorted-Vec model under random adds, updates and removes.
#[test]
fn skiplist_matches_model() {
    let mut rng = Rng::new(99);
    let mut s = big(129);
    let mut model: Vec<(f64, Bytes)> = s.to_vec().into_iter().map(|(m, sc)| (sc, m)).collect();
    for step in 0..4000 {
        let m = b(&format!("k{}", rng.below(400)));
        let sc = (rng.below(50) as f64) - 25.0;
        if rng.below(3) == 0 {
            let had = model.iter().position(|p| p.1 == m);
            assert_eq!(s.remove(&m), had.is_some());
            if let Some(i) = had {
                model.remove(i);
            }
        } else {
            s.add(sc, m.clone(), ZAddFlags::default()).unwrap();
            model.retain(|p| p.1 != m);
            model.push((sc, m));
            model.sort_by(|a, c| cmp_key(a.0, &a.1, c.0, &c.1));
        }
        if step % 97 == 0 {
            let want: Vec<(Bytes, f64)> = model.iter().map(|(sc, m)| (m.clone(), *sc)).collect();
            assert_eq!(s.to_vec(), want);
            for (r, (sc, m)) in model.iter().enumerate() {
                assert_eq!(s.rank(m, false), Some(r));
                assert_eq!(s.score(m), Some(*sc));
            }
            let lo = (rng.below(20) as i64) - 10;
            let cnt = model
                .iter()
                .filter(|p| p.0 >= lo as f64 && p.0 <= (lo + 5) as f64)
                .count();
            assert_eq!(
                s.count_in_score(&sr(&lo.to_string(), &(lo + 5).to_string())),
                cnt
            );
            let r = s.range_by_rank(3, 20, true);
            let want: Vec<_> = model
                .iter()
                .rev()
                .skip(3)
                .take(18)
                .map(|(sc, m)| (m.clone(), *sc))
                .collect();
            assert_eq!(r, want);
        }
    }
    assert_eq!(s.len(), model.len());
}

#[test]
fn mscore_and_scan() {
    let s = z(&[(1.0, "a"), (2.0, "b")]);
    assert_eq!(
        s.mscore([&b"a"[..], b"x", b"b"]),
        vec![Some(1.0), None, Some(2.0)]
    );
    assert_eq!(s.scan(0, 1, None), (0, vec![(b("a"), 1.0), (b("b"), 2.0)]));
    assert_eq!(s.scan(0, 1, Some(b"b*")), (0, vec![(b("b"), 2.0)]));
    let mut s = big(1000);
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    let mut n = 0;
    loop {
        let (c, page) = s.scan(cursor, 10, None);
        for (m, sc) in page {
            assert_eq!(s.score(&m), Some(sc));
            seen.insert(m);
        }
        n += 1;
        s.remove(format!("m{:04}", 999 - n).as_bytes());
        s.add(-1.0, b(&format!("new{n}")), ZAddFlags::default())
            .unwrap();
        cursor = c;
        if cursor == 0 {
            break;
        }
    }
    for i in 0..800 {
        assert!(seen.contains(&b(&format!("m{i:04}"))), "m{i:04}");
    }
}

/// A big set (past every small-encoding limit): every member keeps its rank through
/// inserts and removals, and a rank range in the middle is exact.
#[test]
fn big_zset_ranks_and_removals() {
    let mut rng = Rng::new(1);
    let mut s = ZSet::new();
    let n = 30_000u64;
    for i in 0..n {
        let sc = rng.below(1_000_000) as f64;
        s.add(sc, Bytes::from(format!("m{i}")), ZAddFlags::default())
            .unwrap();
    }
    for i in 0..n {
        assert!(s.rank(format!("m{i}").as_bytes(), false).is_some());
    }
    for i in 0..n / 2 {
        assert!(s.remove(format!("m{i}").as_bytes()));
    }
    assert_eq!(s.len(), (n / 2) as usize);
    let mid = s.range_by_rank(7_000, 7_009, false);
    assert_eq!(mid.len(), 10);
    // Ranks agree with the range: the k-th element of the range has rank 7000 + k.
    for (k, e) in mid.iter().enumerate() {
        assert_eq!(s.rank(&e.0, false), Some(7_000 + k));
    }
}

/// Checks every treap invariant below `n` (order, heap on priorities, subtree sizes) and
/// returns the subtree's size.
fn check_treap(t: &Treap, n: u32, lo: Option<(f64, &[u8])>, hi: Option<(f64, &[u8])>) -> usize {
    let Some(x) = t.node(n) else { return 0 };
    if let Some((s, m)) = lo {
        assert_eq!(cmp_key(s, m, x.score, &x.member), Ordering::Less);
    }
    if let Some((s, m)) = hi {
        assert_eq!(cmp_key(x.score, &x.member, s, m), Ordering::Less);
    }
    for c in [x.left, x.right] {
        if let Some(y) = t.node(c) {
            assert!(y.prio <= x.prio, "heap order");
        }
    }
    let me = Some((x.score, &x.member[..]));
    let l = check_treap(t, x.left, lo, me);
    let r = check_treap(t, x.right, me, hi);
    assert_eq!(x.size as usize, 1 + l + r, "subtree size");
    1 + l + r
}

/// Checks the treap (`check_treap`) and that the member index names exactly the live
/// nodes; returns the element count.
fn check_big(b: &Big) -> usize {
    let n = check_treap(&b.tree, b.tree.root, None, None);
    assert_eq!(b.index.len(), n, "index entries");
    for (i, x) in b.tree.nodes.iter().enumerate() {
        if x.size > 0 {
            assert_eq!(b.find(&x.member), Some(i as u32), "index of node {i}");
            assert_eq!(b.score(&x.member), Some(x.score));
        }
    }
    n
}

#[test]
fn big_form_insert_rescore_remove_keep_every_invariant() {
    use std::collections::BTreeMap;
    let mut b = Big::with_capacity(0);
    // member -> score
    let mut model: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut rng = Rng::new(7);
    for step in 0..20_000u32 {
        // Few distinct scores, so member order decides often.
        let score = rng.below(8) as u64;
        let member = format!("m{}", rng.below(3000)).into_bytes();
        match rng.below(4) {
            0 => assert_eq!(b.remove(&member), model.remove(&member).is_some(), "{step}"),
            1 => {
                if let Some(i) = b.find(&member) {
                    b.rescore(i, score as f64);
                    model.insert(member.clone(), score);
                    assert_eq!(b.find(&member), Some(i), "rescoring keeps the node");
                }
            }
            _ => {
                if !model.contains_key(&member) {
                    model.insert(member.clone(), score);
                    b.insert_new(score as f64, Bytes::from(member));
                }
            }
        }
        if step % 1000 == 0 {
            assert_eq!(check_big(&b), model.len());
        }
    }
    assert_eq!(check_big(&b), model.len());
    let mut order: Vec<(u64, Vec<u8>)> = model.iter().map(|(m, &s)| (s, m.clone())).collect();
    order.sort();
    for (i, (s, m)) in order.iter().enumerate() {
        let (ts, tm) = b.tree.select(i).unwrap();
        assert_eq!((ts, &tm[..]), (*s as f64, &m[..]));
    }
    // Removing an absent member changes nothing.
    assert!(!b.remove(b"absent"));
    assert_eq!(check_big(&b), model.len());
    // Freed nodes are reused.
    let before = b.tree.nodes.len();
    for (_, m) in &order {
        assert!(b.remove(m));
    }
    assert_eq!((b.tree.len(), b.tree.root, b.index.len()), (0, NIL, 0));
    for (s, m) in &order {
        b.insert_new(*s as f64, Bytes::from(m.clone()));
    }
    assert_eq!(b.tree.nodes.len(), before);
    assert_eq!(check_big(&b), order.len());
}

#[test]
fn big_form_pops_from_either_edge_in_order() {
    let mut b = Big::with_capacity(0);
    let mut rng = Rng::new(3);
    let mut want: Vec<(u64, String)> = (0..500)
        .map(|i| (rng.below(20) as u64, format!("m{i}")))
        .collect();
    for (s, m) in &want {
        b.insert_new(*s as f64, Bytes::from(m.clone()));
    }
    want.sort();
    let (mut lo, mut hi) = (0, want.len());
    while lo < hi {
        let last = rng.below(2) == 0;
        let (s, m) = b.tree.detach_edge(last).and_then(|i| b.forget(i)).unwrap();
        let e = if last {
            hi -= 1;
            &want[hi]
        } else {
            lo += 1;
            &want[lo - 1]
        };
        assert_eq!((s, &m[..]), (e.0 as f64, e.1.as_bytes()));
        assert_eq!(check_big(&b), hi - lo);
    }
    assert!(b.tree.detach_edge(false).is_none() && b.tree.detach_edge(true).is_none());
}

#[test]
fn big_form_scan_visits_every_element_present_throughout_once() {
    let mut z = big(1000);
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut cursor = 0;
    let mut round = 0;
    loop {
        let (next, page) = z.scan(cursor, 10, None);
        for (m, _) in page {
            *seen.entry(m.to_vec()).or_default() += 1;
        }
        // Churn meanwhile: remove members from the upper half, add new ones.
        for j in 0..3 {
            let victim = format!("m{:04}", 500 + (round * 3 + j) % 500);
            z.remove(victim.as_bytes());
            z.add(1.0, b(&format!("new{round}_{j}")), ZAddFlags::default())
                .unwrap();
        }
        round += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    for i in 0..500 {
        assert_eq!(seen.get(format!("m{i:04}").as_bytes()), Some(&1), "m{i:04}");
    }
}

/// Built from pairs with repeated members, small and big: the last score of a member wins
/// and the order is (score, member), as with the hash map the small path no longer builds.
#[test]
fn from_pairs_keeps_the_last_score_of_a_repeated_member() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for n in [0usize, 1, 5, 40, 128, 129, 300] {
        let pairs: Vec<(Bytes, f64)> = (0..n)
            .map(|_| {
                let m = Bytes::from(format!("m{}", next(60)));
                (m, (next(7) as f64) - 3.0)
            })
            .collect();
        let mut last: std::collections::HashMap<Bytes, f64> = Default::default();
        for (m, s) in &pairs {
            last.insert(m.clone(), *s);
        }
        let mut want: Vec<(Bytes, f64)> = last.into_iter().collect();
        want.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let got = ZSet::from_pairs(pairs.clone()).range_by_rank(0, -1, false);
        assert_eq!(got, want, "{n}");
        let packed = ZSet::from_packed_pairs(pairs).range_by_rank(0, -1, false);
        assert_eq!(packed, want, "{n}");
    }
}
