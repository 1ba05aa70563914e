use usec_replication::cft::{Event, MuConfig};
use usec_replication::driver::sim::SimGroup;
use usec_replication::driver::DetectorConfig;
use usec_replication::History;

fn small_config() -> MuConfig {
    MuConfig { capacity: 16, slot_bytes: 512, snapshot_bytes: 1 << 16, read_chunk: 4, pipeline: 4, ..MuConfig::default() }
}

#[test]
fn three_replicas_elect_and_replicate() {
    let mut group = SimGroup::new("smoke", 1, 3, &small_config(), DetectorConfig::default(), &[], History::default).unwrap();
    let elected = group.run_until(5_000_000, |group| group.leaders().len() == 1);
    assert!(elected, "no leader: roles {:?}", (0..3).map(|i| group.driver(i).unwrap().replica().role()).collect::<Vec<_>>());
    let leader = group.leaders()[0];
    eprintln!("leader {leader} at {} ns", group.fabric.now_ns());
    let mut client = group.driver(leader).unwrap().client(77);
    let mut tickets = Vec::new();
    for index in 0..40u32 {
        tickets.push(client.submit(format!("command {index}").as_bytes()).unwrap());
        group.run_for(2_000);
    }
    let mut outcomes: Vec<Option<_>> = tickets.iter().map(|_| None).collect();
    let done = group.run_until(20_000_000, |_| {
        for (ticket, outcome) in tickets.iter().zip(&mut outcomes) {
            if outcome.is_none() {
                *outcome = ticket.try_take();
            }
        }
        outcomes.iter().all(Option::is_some)
    });
    for outcome in &outcomes {
        assert!(matches!(outcome, Some(Ok(_))), "{outcome:?}");
    }
    assert!(done, "commands not committed; commit {:?}", (0..3).map(|i| group.driver(i).unwrap().replica().commit_index()).collect::<Vec<_>>());
    group.run_for(1_000_000);
    let histories: Vec<_> = (0..3).map(|i| group.driver(i).unwrap().replica().state_machine().applied.clone()).collect();
    eprintln!("applied: {:?}", histories.iter().map(Vec::len).collect::<Vec<_>>());
    if histories[2].is_empty() { eprintln!("{:#?}", group.driver(leader).unwrap().replica()); }
    assert_eq!(histories[0].len(), 40);
    assert!(histories.iter().all(|history| history == &histories[0]));
    let _ = Event::RoleChanged { role: usec_replication::cft::RoleKind::Leader, leader: None };
}
