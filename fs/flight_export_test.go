package fs

// JobLookupCallers is how many callers the shared lookup of job id has (0: none in flight), for the
// unmount tests.
func (m *Mounted) JobLookupCallers(id string) int { return m.fsys.jobCalls.callers("find\x00" + id) }
