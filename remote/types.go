package remote

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Time is a date from the API. The zero Time stands for null or "" (a run not yet completed).
type Time struct{ time.Time }

// timeLayouts are tried in order: RFC 3339 with or without fraction and with Z or an offset (what the
// API sends), then zone-less forms read as UTC, which some older endpoints have been seen to send.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
}

// ParseTime parses an API date; "" gives the zero Time.
func ParseTime(s string) (Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Time{}, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return Time{t}, nil
		}
	}
	return Time{}, fmt.Errorf("unrecognised date %q", s)
}

func (t *Time) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*t = Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("date: %w", err)
	}
	v, err := ParseTime(s)
	if err != nil {
		return err
	}
	*t = v
	return nil
}

func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format("2006-01-02T15:04:05.000000Z"))
}

// Label is the {"content": "..."} wrapper the job list uses for statuses.
type Label struct {
	Content string `json:"content"`
}

// Job is an item of GET /api/v2/jobs/ (or the detail of one job, which has no JobStatus).
type Job struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name"`
	DateInserted         Time            `json:"dateInserted"`
	Owner                string          `json:"owner"`
	AnalysisNames        []string        `json:"analysisNames"`
	JobStatus            Label           `json:"jobStatus"`
	ClusterStatusDisplay Label           `json:"clusterStatusDisplay"`
	Storage              int64           `json:"storage"` // bytes of storage used
	SharedWith           []string        `json:"sharedWith"`
	IsVisible            bool            `json:"isVisible"`
	JobAnalyses          json.RawMessage `json:"jobanalyses,omitempty"` // detail only; kept raw
}

// Status names the API uses; the list is not closed.
const (
	StatusPending   = "Pending"
	StatusQueued    = "Queued"
	StatusStarted   = "Started"
	StatusValidated = "Validated"
	StatusExecuting = "Executing"
	StatusStopping  = "Stopping"
	StatusCompleted = "Completed"

	// ReasonSucceeded is the statusReason of a Completed status that is a success.
	ReasonSucceeded = "Completed successfully"
)

// Status is one entry of GET /api/v2/jobs/{id}/statuses/.
type Status struct {
	Status       string `json:"status"`
	StatusDate   Time   `json:"statusDate"`
	StatusReason string `json:"statusReason"`
}

// Statuses is a job's status history, newest first.
type Statuses []Status

// Latest is the newest status, or the zero Status for an empty history.
func (s Statuses) Latest() Status {
	if len(s) == 0 {
		return Status{}
	}
	return s[0]
}

// Completed says whether the job has reached Completed, the terminal status, whatever its outcome.
func (s Statuses) Completed() bool {
	_, ok := s.completed()
	return ok
}

func (s Statuses) completed() (Status, bool) {
	for _, st := range s {
		if st.Status == StatusCompleted {
			return st, true
		}
	}
	return Status{}, false
}

// Succeeded says whether the job completed successfully: Completed with the success reason, and never
// through Stopping (a failed or stopped job passes through Stopping before Completed).
func (s Statuses) Succeeded() bool {
	c, ok := s.completed()
	if !ok || c.StatusReason != ReasonSucceeded {
		return false
	}
	for _, st := range s {
		if st.Status == StatusStopping {
			return false
		}
	}
	return true
}

// Run is one run of a job.
type Run struct {
	ID              string `json:"id"`
	DateStarted     Time   `json:"dateStarted"`
	DateCompleted   Time   `json:"dateCompleted"`
	OutputFileCount int    `json:"outputFileCount"`
	// DisplayOrder and Variables describe a DOE run: its place in the table and its parameter and
	// output values.
	DisplayOrder int           `json:"displayOrder"`
	Variables    []RunVariable `json:"variables"`
}

// RunVariable is one variable of a run: an input parameter of a DOE row, or an output the
// post-processing step printed as name<TAB>value.
type RunVariable struct {
	Name         string `json:"name"`
	Value        any    `json:"value"`
	DisplayValue string `json:"displayValue"`
}

// Live says whether the run is in progress: its live files are served by directory-contents and tail.
func (r Run) Live() bool { return !r.DateStarted.IsZero() && r.DateCompleted.IsZero() }

// File types (typeId).
const (
	TypeInput      = 1
	TypeTemplate   = 2
	TypeParameter  = 3
	TypeScript     = 4
	TypeOutput     = 5
	TypeCheckpoint = 11
	TypeSnapshot   = 12
)

// Checksum is one entry of fileChecksums.
type Checksum struct {
	HashFunction string `json:"hashFunction"`
	FileHash     string `json:"fileHash"`
}

// PathParts locates a file's object in its storage.
type PathParts struct {
	Container string `json:"container"`
	Path      string `json:"path"`
}

// ConnectionSettings of a storage. Endpoint is an emulator extension (its S3 base URL, path-style);
// real Rescale does not send it and S3 clients then use AWS.
type ConnectionSettings struct {
	Region    string `json:"region"`
	Container string `json:"container"`
	PathBase  string `json:"pathBase"`
	Endpoint  string `json:"endpoint,omitempty"`
}

// Storage is where a file's encrypted object lives.
type Storage struct {
	ID                 string             `json:"id"`
	StorageType        string             `json:"storageType"` // "S3Storage", "AzureStorage"
	EncryptionType     string             `json:"encryptionType"`
	ConnectionSettings ConnectionSettings `json:"connectionSettings"`
}

// File is the API's file object.
type File struct {
	ID                   string     `json:"id"`
	Name                 string     `json:"name"`
	RelativePath         string     `json:"relativePath"`
	Path                 string     `json:"path"`
	DecryptedSize        int64      `json:"decryptedSize"`
	DateUploaded         Time       `json:"dateUploaded"`
	TypeID               int        `json:"typeId"`
	IsUploaded           bool       `json:"isUploaded"`
	IsDeleted            bool       `json:"isDeleted"`
	DownloadURL          string     `json:"downloadUrl"`
	EncodedEncryptionKey string     `json:"encodedEncryptionKey"`
	Owner                string     `json:"owner"`
	SharedWith           []string   `json:"sharedWith"`
	FileChecksums        []Checksum `json:"fileChecksums"`
	PathParts            PathParts  `json:"pathParts"`
	Storage              Storage    `json:"storage"`
}

// SHA512 is the hex sha512 of the plaintext from fileChecksums, or "" when the platform gave none.
func (f File) SHA512() string {
	for _, c := range f.FileChecksums {
		if strings.EqualFold(c.HashFunction, "sha512") {
			return strings.ToLower(c.FileHash)
		}
	}
	return ""
}

// EncryptionKey decodes encodedEncryptionKey (the AES-256 key of the stored object).
func (f File) EncryptionKey() ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(f.EncodedEncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("file %s: encryption key: %w", f.ID, err)
	}
	return k, nil
}

// available says whether a file is a real one: uploaded and not deleted.
func (f File) available() bool { return f.IsUploaded && !f.IsDeleted }

// LiveFile is an entry of a running job's directory-contents.
type LiveFile struct {
	Path     string `json:"path"`
	Resource string `json:"resource"`
	// Size is the file's length when the listing carries one (the emulator's does; the public sources
	// show only path and resource [I]); nil otherwise.
	Size *int64 `json:"size,omitempty"`
}

// User is GET /api/v3/users/me/; the uploads need its default storage.
type User struct {
	ID             string  `json:"id"`
	Email          string  `json:"email"`
	FirstName      string  `json:"firstName"`
	LastName       string  `json:"lastName"`
	DefaultStorage Storage `json:"defaultStorage"`
	FullName       string  `json:"fullName"`
	Company        struct {
		Code string `json:"code"`
	} `json:"company"`
	Workspace struct {
		ID   FlexID `json:"id"`
		Name string `json:"name"`
	} `json:"workspace"`
}

// FlexID is an id the platform may send as a string or as a number (null: empty). A field the
// uploads do not need must never fail the decoding of users/me.
type FlexID string

func (f *FlexID) UnmarshalJSON(b []byte) error {
	s, err := idString(b)
	if err != nil {
		return err
	}
	*f = FlexID(s)
	return nil
}

// StorageRef names a storage in requests (credentials, file registration).
type StorageRef struct {
	ID             string `json:"id"`
	StorageType    string `json:"storageType"`
	EncryptionType string `json:"encryptionType,omitempty"`
}

// CredentialPath is one path of a credentials request (a file outside the default storage).
type CredentialPath struct {
	PathParts PathParts `json:"pathParts"`
}

// CredentialsRequest asks for credentials on a file's storage; a nil request asks for the user's
// default storage.
type CredentialsRequest struct {
	Storage *StorageRef      `json:"storage,omitempty"`
	Paths   []CredentialPath `json:"paths,omitempty"`
}

// StorageCredentials are short-lived (about 15 minutes) storage credentials. They are secrets: String
// and LogValue leave them out.
type StorageCredentials struct {
	StorageType  string `json:"storageType"`
	StorageDir   string `json:"storageDir"`
	AccessKey    string `json:"accessKey"`
	SecretKey    string `json:"secretKey"`
	SessionToken string `json:"sessionToken"`
	SASToken     string `json:"sasToken,omitempty"` // Azure
	Expiration   Time   `json:"expiration"`         // zero when the platform does not say
	Region       string `json:"region,omitempty"`
	Container    string `json:"container,omitempty"`
	Endpoint     string `json:"endpoint,omitempty"` // emulator extension: S3 base URL, path-style
}

func (c StorageCredentials) String() string {
	return fmt.Sprintf("StorageCredentials{%s dir=%q endpoint=%q expires=%v}", c.StorageType, c.StorageDir,
		c.Endpoint, c.Expiration.Time)
}

// GoString keeps the secrets out of %#v.
func (c StorageCredentials) GoString() string { return c.String() }

// LogValue keeps the secrets out of structured logs.
func (c StorageCredentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// FileRegistration is the body of POST /api/v3/files/ after a direct-to-storage upload.
type FileRegistration struct {
	TypeID               int        `json:"typeId"`
	Name                 string     `json:"name"`
	EncodedEncryptionKey string     `json:"encodedEncryptionKey"`
	PathParts            PathParts  `json:"pathParts"`
	Storage              StorageRef `json:"storage"`
	IsUploaded           bool       `json:"isUploaded"`
	DecryptedSize        int64      `json:"decryptedSize"`
	FileChecksums        []Checksum `json:"fileChecksums"`
}

// page is one page of a Django-REST list.
type page[T any] struct {
	Count   int     `json:"count"`
	Next    *string `json:"next"`
	Results []T     `json:"results"`
}

// idString reads an id that the platform may send as a string or as a number.
func idString(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", fmt.Errorf("id: %w", err)
	}
	return n.String(), nil
}

// UnmarshalJSON takes the storage id as a string or a number.
func (s *Storage) UnmarshalJSON(b []byte) error {
	type plain Storage
	var v struct {
		plain
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	id, err := idString(v.ID)
	if err != nil {
		return err
	}
	*s = Storage(v.plain)
	s.ID = id
	return nil
}

// UnmarshalJSON takes the run id as a string or a number.
func (r *Run) UnmarshalJSON(b []byte) error {
	type plain Run
	var v struct {
		plain
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	id, err := idString(v.ID)
	if err != nil {
		return err
	}
	*r = Run(v.plain)
	r.ID = id
	return nil
}

// UnmarshalJSON takes the user id as a string or a number.
func (u *User) UnmarshalJSON(b []byte) error {
	type plain User
	var v struct {
		plain
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	id, err := idString(v.ID)
	if err != nil {
		return err
	}
	*u = User(v.plain)
	u.ID = id
	return nil
}
