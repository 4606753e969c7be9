package fs

// JobLookupCallers is how many callers the shared lookup of job id has (0: none in flight), for the
// unmount tests.
func (m *Mounted) JobLookupCallers(id string) int { return m.fsys.jobCalls.callers("find\x00" + id) }

// PollRounds is how many rounds the mount's poller has finished.
func (m *Mounted) PollRounds() int64 { return m.poller.rounds.Load() }
