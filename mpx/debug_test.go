package mpx

import "fmt"

func (c *Conn) debugState() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := fmt.Sprintf("token %016x client=%v sndUna=%d sndNxt=%d peerWnd=%d queue=%d nextNew=%d reinject=%d fin=%v/%v rcvNxt=%d ready=%d unread=%d ooo=%d eof=%v err=%v appClosed=%v\n",
		c.keys.token, c.client, c.sndUna, c.sndNxt, c.peerWnd, len(c.queue), c.nextNew, len(c.reinject), c.finQueued, c.finAcked, c.rcvNxt, len(c.ready), c.unread, len(c.ooo), c.eof, c.err, c.appClosed)
	for _, sf := range c.subflows {
		s += fmt.Sprintf("  sf slot=%d %v->%v L=%d R=%d est=%v waiting=%v stale=%v closing=%v dead=%v srtt=%v sent=%d recv=%d ctrl=%d ack=%v\n",
			sf.slot, sf.local, sf.remote, sf.localID, sf.remoteID, sf.established, sf.waiting, sf.stale, sf.closing, sf.dead, sf.srtt, sf.bytesSent, sf.bytesRecv, len(sf.ctrl), sf.ackWanted)
	}
	return s
}
