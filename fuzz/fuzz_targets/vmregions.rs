//! Fuzz target: random region-list operations against a shadow vector of regions.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vmregions::{Backing, Prot, Region, RegionError, RegionList, Sharing};

#[derive(Arbitrary, Debug)]
enum Action {
    Insert {
        page: u16,
        pages: u8,
        file: bool,
    },
    Remove {
        page: u16,
        pages: u8,
    },
    Find {
        page: u16,
    },
    Gap {
        pages: u8,
        align_log: u8,
        lower: u16,
        hint: Option<u16>,
    },
    Clone,
    Clear,
}

const P: u64 = 4096;
const SPACE: u64 = 600;

fn region(page: u64, pages: u64, file: bool) -> Region<u16> {
    let backing = if file {
        Backing::File {
            handle: page as u16,
            offset: page * P,
        }
    } else {
        Backing::Anonymous
    };
    Region {
        start: page * P,
        len: pages * P,
        prot: Prot::READ,
        sharing: Sharing::Private,
        backing,
    }
}

fuzz_target!(|actions: Vec<Action>| {
    let max = 50;
    let mut l: RegionList<u16> = RegionList::new(max);
    let mut shadow: Vec<Region<u16>> = Vec::new();
    for action in actions.into_iter().take(1000) {
        match action {
            Action::Insert { page, pages, file } => {
                let r = region(page as u64 % SPACE, pages as u64 % 16 + 1, file);
                let overlap = shadow
                    .iter()
                    .any(|s| s.start < r.end() && r.start < s.end());
                match l.insert(r.clone()) {
                    Ok(()) => {
                        assert!(!overlap && shadow.len() < max);
                        shadow.push(r);
                        shadow.sort_by_key(|s| s.start);
                    }
                    Err(RegionError::Overlap) => assert!(overlap),
                    Err(RegionError::TooManyRegions) => assert!(shadow.len() >= max),
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            Action::Remove { page, pages } => {
                let (s, e) = (
                    (page as u64 % SPACE) * P,
                    (page as u64 % SPACE + pages as u64 % 40 + 1) * P,
                );
                let mut next = Vec::new();
                let mut removed = Vec::new();
                for r in &shadow {
                    if r.end() <= s || r.start >= e {
                        next.push(r.clone());
                        continue;
                    }
                    if r.start < s {
                        next.push(r.slice(r.start, s));
                    }
                    if r.end() > e {
                        next.push(r.slice(e, r.end()));
                    }
                    removed.push(r.slice(r.start.max(s), r.end().min(e)));
                }
                let mut got = Vec::new();
                match l.remove_range(s, e - s, |r| got.push(r)) {
                    Ok(n) => {
                        assert_eq!(n, removed.len());
                        assert_eq!(got, removed);
                        next.sort_by_key(|r| r.start);
                        shadow = next;
                    }
                    Err(RegionError::TooManyRegions) => {
                        assert!(next.len() > max);
                        assert!(got.is_empty());
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            Action::Find { page } => {
                let a = (page as u64 % (SPACE + 20)) * P + 123;
                assert_eq!(l.find(a), shadow.iter().find(|r| r.contains(a)));
            }
            Action::Gap {
                pages,
                align_log,
                lower,
                hint,
            } => {
                let size = (pages as u64 % 20 + 1) * P;
                let align = P << (align_log % 5);
                let lower = (lower as u64 % SPACE) * P;
                let upper = (SPACE + 30) * P;
                let free = |s: u64| shadow.iter().all(|r| r.end() <= s || r.start >= s + size);
                let ok =
                    |s: u64| s.is_multiple_of(align) && s >= lower && s + size <= upper && free(s);
                let hint = hint.map(|h| (h as u64 % SPACE) * P);
                let want = match hint {
                    Some(h) if ok(h) => Some(h),
                    _ => (0..upper / P).map(|p| p * P).find(|&s| ok(s)),
                };
                assert_eq!(l.find_gap(size, align, lower, upper, hint), want);
            }
            Action::Clone => {
                let c = l.try_clone().unwrap();
                c.check_invariants();
                l = c;
            }
            Action::Clear => {
                let mut n = 0;
                l.clear(|_| n += 1);
                assert_eq!(n, shadow.len());
                shadow.clear();
            }
        }
        l.check_invariants();
        assert!(l.iter().eq(shadow.iter()));
    }
});
