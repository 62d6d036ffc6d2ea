package broker

// noteReplicaHealth is called whenever partition p becomes damaged (a
// sealed segment it must serve failed its checks) or is fully repaired
// (scrub.go). In a cluster the controller hears of it
// (reportReplicaHealth): a damaged replica leaves the ISR unless it is the
// last member, and cannot rejoin it or lead while a whole replica can,
// until it reports itself repaired.
func (b *Broker) noteReplicaHealth(p *partition) {
	from, damaged := p.damagedFrom()
	if damaged {
		b.log.Warn("replica damaged: it cannot serve its whole log until repaired", "topic", p.topic.name,
			"partition", p.index, "first_unverified_offset", from)
	} else {
		b.log.Info("replica whole again: its damaged segments are repaired or gone", "topic", p.topic.name, "partition", p.index)
	}
	if p.repl.on {
		b.reportReplicaHealth(p)
	}
}
