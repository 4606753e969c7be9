package emulator

// Wire structs: the JSON shapes of rescale-api.md, re-stated here on purpose (the emulator does not import
// the client), so a client test against the emulator checks the client against the document.

type contentField struct {
	Content string `json:"content"`
}

type jobListItemJSON struct {
	ID                   string       `json:"id"`
	Name                 string       `json:"name"`
	DateInserted         string       `json:"dateInserted"`
	Owner                string       `json:"owner"`
	AnalysisNames        []string     `json:"analysisNames"`
	JobStatus            contentField `json:"jobStatus"`
	ClusterStatusDisplay contentField `json:"clusterStatusDisplay"`
	Storage              int64        `json:"storage"`
	SharedWith           []string     `json:"sharedWith"`
	IsVisible            bool         `json:"isVisible"`
}

type analysisJSON struct {
	Code    string `json:"code"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

type jobAnalysisJSON struct {
	Analysis                 analysisJSON      `json:"analysis"`
	Command                  string            `json:"command"`
	Hardware                 hardwareJSON      `json:"hardware"`
	InputFiles               []any             `json:"inputFiles"`
	PostProcessScript        *fileRefJSON      `json:"postProcessScript"`
	PostProcessScriptCommand string            `json:"postProcessScriptCommand"`
	EnvVars                  map[string]string `json:"envVars"`
	UseRescaleLicense        bool              `json:"useRescaleLicense"`
	TemplateTasks            []templateTask    `json:"templateTasks"`
}

type hardwareJSON struct {
	CoreType     string `json:"coreType"`
	CoresPerSlot int    `json:"coresPerSlot"`
	Slots        int    `json:"slots"`
	Walltime     int    `json:"walltime"`
}

// jobDetailJSON is GET /api/v2/jobs/{id}/: it carries no jobStatus [C].
type jobDetailJSON struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Description    string            `json:"description"`
	DateInserted   string            `json:"dateInserted"`
	Owner          string            `json:"owner"`
	JobAnalyses    []jobAnalysisJSON `json:"jobanalyses"`
	SharedWith     []string          `json:"sharedWith"`
	IsLowPriority  bool              `json:"isLowPriority"`
	ProjectID      *string           `json:"projectId"`
	Storage        int64             `json:"storage"`
	ArchiveFilters []any             `json:"archiveFilters"`
	ParamFile      *fileRefJSON      `json:"paramFile"`
	JobVariables   []any             `json:"jobvariables"`
	// JobStatus is sent by v3 only [C]: the v2 detail carries none.
	JobStatus *contentField `json:"jobStatus,omitempty"`
}

type statusJSON struct {
	Status       string  `json:"status"`
	StatusDate   string  `json:"statusDate"`
	StatusReason *string `json:"statusReason"`
}

type runJSON struct {
	ID              string        `json:"id"`
	DisplayOrder    int           `json:"displayOrder"`
	DateStarted     *string       `json:"dateStarted"`
	DateCompleted   *string       `json:"dateCompleted"`
	OutputFileCount int           `json:"outputFileCount"`
	OutputFileSize  int64         `json:"outputFileSize"`
	Variables       []runVariable `json:"variables"`
}

// runVariable is a run's variable: a DOE parameter, or an output the post-processing step printed [C].
type runVariable struct {
	Name         string `json:"name"`
	Value        any    `json:"value"`
	DisplayValue string `json:"displayValue"`
}

type checksumJSON struct {
	HashFunction string `json:"hashFunction"`
	FileHash     string `json:"fileHash"`
}

type pathPartsJSON struct {
	Container string `json:"container"`
	Path      string `json:"path"`
}

type connectionSettingsJSON struct {
	Region    string `json:"region"`
	Container string `json:"container"`
	PathBase  string `json:"pathBase"`
	// Endpoint is emulator-only [I]: the S3 base URL (path style). Real Rescale sends none and clients
	// then use AWS's own endpoint for the region.
	Endpoint string `json:"endpoint,omitempty"`
}

type storageJSON struct {
	ID                 string                  `json:"id"`
	StorageType        string                  `json:"storageType"`
	EncryptionType     string                  `json:"encryptionType"`
	ConnectionSettings *connectionSettingsJSON `json:"connectionSettings,omitempty"`
}

type fileJSON struct {
	ID                   string         `json:"id"`
	Name                 string         `json:"name"`
	RelativePath         string         `json:"relativePath"`
	Path                 string         `json:"path"`
	DecryptedSize        int64          `json:"decryptedSize"`
	DateUploaded         string         `json:"dateUploaded"`
	TypeID               int            `json:"typeId"`
	IsUploaded           bool           `json:"isUploaded"`
	IsDeleted            bool           `json:"isDeleted"`
	DownloadURL          string         `json:"downloadUrl"`
	EncodedEncryptionKey string         `json:"encodedEncryptionKey"`
	Owner                string         `json:"owner"`
	SharedWith           []string       `json:"sharedWith"`
	FileChecksums        []checksumJSON `json:"fileChecksums"`
	PathParts            pathPartsJSON  `json:"pathParts"`
	Storage              storageJSON    `json:"storage"`
}

type userJSON struct {
	ID             string      `json:"id"`
	Email          string      `json:"email"`
	FirstName      string      `json:"firstName"`
	LastName       string      `json:"lastName"`
	FullName       string      `json:"fullName"`
	Company        codeJSON    `json:"company"`
	Workspace      idNameJSON  `json:"workspace"`
	DefaultStorage storageJSON `json:"defaultStorage"`
}

type codeJSON struct {
	Code string `json:"code"`
}

type idNameJSON struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type credentialsJSON struct {
	StorageType  string `json:"storageType"`
	AccessKey    string `json:"accessKey"`
	SecretKey    string `json:"secretKey"`
	SessionToken string `json:"sessionToken"`
	StorageDir   string `json:"storageDir"`
	// Expiration, Region, Container and Endpoint are emulator extras [I]; Endpoint as in
	// connectionSettingsJSON.
	Expiration string `json:"expiration"`
	Region     string `json:"region"`
	Container  string `json:"container"`
	Endpoint   string `json:"endpoint,omitempty"`
}

type directoryEntryJSON struct {
	Path     string `json:"path"`
	Resource string `json:"resource"`
	// Size and LastModified are emulator extras [I]: the public sources show only path and resource.
	Size         int64  `json:"size"`
	LastModified string `json:"lastModified"`
}
