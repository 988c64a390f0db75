//! The session pieces allocate nothing until they hold something: an idle
//! connection pays only their inline size.
//!
//! `allocation-counter` replaces the global allocator of this test binary
//! (and only this one) and counts the allocations of the current thread.

use mqtt_codec::{IncomingTopicAliases, OutgoingTopicAliases, PacketIdPool, TopicName};

#[test]
fn empty_tables_and_the_pool_do_not_allocate() {
    let topic = TopicName::try_from("sensors/kitchen/temperature").unwrap();
    let info = allocation_counter::measure(|| {
        let mut pool = PacketIdPool::new();
        assert!(pool.allocate(|_| false).is_some());
        let mut out = OutgoingTopicAliases::default();
        assert!(out.lookup_or_propose(&topic, 10).alias().is_some());
        out.clear();
        let mut inc = IncomingTopicAliases::default();
        assert!(inc.resolve(1, &mut TopicName::empty(), 10).is_err());
        inc.clear();
        std::hint::black_box((pool, out, inc));
    });
    assert_eq!(info.count_total, 0);
}

#[test]
fn clear_frees_what_the_tables_held() {
    let topic = TopicName::try_from("a/b").unwrap();
    let mut out = OutgoingTopicAliases::new();
    let mut inc = IncomingTopicAliases::new();
    let info = allocation_counter::measure(|| {
        out.commit(topic.clone(), 1);
        inc.resolve(1, &mut topic.clone(), 1).unwrap();
        out.clear();
        inc.clear();
    });
    assert!(info.count_total > 0);
    assert_eq!(info.count_current, 0);
}

#[test]
fn inline_sizes() {
    use std::mem::size_of;
    assert_eq!(size_of::<PacketIdPool>(), 2);
    assert!(size_of::<OutgoingTopicAliases>() <= 24);
    assert!(size_of::<IncomingTopicAliases>() <= 24);
}
