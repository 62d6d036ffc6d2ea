package broker

// noteReplicaHealth is called whenever partition p becomes damaged (a
// sealed segment it must serve failed its checks) or is fully repaired
// (scrub.go). It is the seam for the controller: a damaged replica is to
// leave the ISR and not lead while a healthy replica lives. For now it only
// logs.
func (b *Broker) noteReplicaHealth(p *partition) {
	from, damaged := p.damagedFrom()
	if damaged {
		b.log.Info("replica damaged: it cannot serve its whole log until repaired", "topic", p.topic.name,
			"partition", p.index, "first_unverified_offset", from)
		return
	}
	b.log.Info("replica healthy again: its damaged segments are repaired or gone", "topic", p.topic.name, "partition", p.index)
}
