package emulator

import (
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/rescalefs/rescalefs/remote/cbc"
)

// credentialLifetime is how long storage credentials from /api/v3/credentials/ stay valid: "about 15
// minutes" [I].
const credentialLifetime = 15 * time.Minute

// chunkedUploadStatus is the answer to a small upload without Content-Length [I]: chunked bodies are
// refused [C], with which status is not documented.
const chunkedUploadStatus = http.StatusLengthRequired

// badFileName is the field error of a file name the platform refuses (400) [I]: a control character
// gets it (issue 8), and so does a name given to RejectUploadName.
const badFileName = "The file name is not valid."

// uploadNames are the test knobs on the names of uploaded files (small POST and register alike).
type uploadNames struct {
	mu     sync.Mutex        // guards the maps
	reject map[string]bool   // names answered 400 badFileName (RejectUploadName)
	stored map[string]string // name sent -> name stored (StoreUploadNameAs)
}

// refused reports a name the platform refuses: one with a control character [I], or a knob's.
func (n *uploadNames) refused(name string) bool {
	if strings.ContainsFunc(name, unicode.IsControl) {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.reject[name]
}

// storedAs is the name a file sent as name is stored (and answered) under.
func (n *uploadNames) storedAs(name string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.stored[name]; ok {
		return s
	}
	return name
}

// RejectUploadName makes every upload of a file named name answered as the platform answers a name
// it cannot store: 400 with a field error, the same at every try.
func (e *Emulator) RejectUploadName(name string) {
	e.uploadNames.mu.Lock()
	defer e.uploadNames.mu.Unlock()
	if e.uploadNames.reject == nil {
		e.uploadNames.reject = map[string]bool{}
	}
	e.uploadNames.reject[name] = true
}

// StoreUploadNameAs makes an upload of a file named sent stored, and answered, under the name stored:
// a platform that normalises names (as it encodes a newline in a multipart form).
func (e *Emulator) StoreUploadNameAs(sent, stored string) {
	e.uploadNames.mu.Lock()
	defer e.uploadNames.mu.Unlock()
	if e.uploadNames.stored == nil {
		e.uploadNames.stored = map[string]string{}
	}
	e.uploadNames.stored[sent] = stored
}

func (e *Emulator) serveUpload(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength < 0 || slices.Contains(r.TransferEncoding, "chunked") {
		writeDetail(w, chunkedUploadStatus, "Content-Length required: chunked uploads are not accepted.")
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		writeDetail(w, http.StatusBadRequest, "Multipart form parse error - "+err.Error())
		return
	}
	var f *fileRecord
	var o *objectRecord
	typeID := TypeInput
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			writeDetail(w, http.StatusBadRequest, "Multipart form parse error - "+err.Error())
			return
		}
		switch part.FormName() {
		case "file":
			name := part.FileName()
			if name == "" || f != nil {
				part.Close()
				writeFieldErrors(w, "file", "The submitted data was not a file.")
				return
			}
			if e.uploadNames.refused(name) {
				part.Close()
				writeFieldErrors(w, "file", badFileName)
				return
			}
			e.mu.RLock()
			key := libraryObjectKey(e.pathBaseLocked(), name)
			e.mu.RUnlock()
			f, o, err = e.stored(key, part, -1)
			if err != nil {
				writeDetail(w, http.StatusBadRequest, "Upload failed: "+err.Error())
				return
			}
			f.Name = e.uploadNames.storedAs(name)
		case "typeId":
			b, _ := io.ReadAll(io.LimitReader(part, 64))
			if typeID, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
				writeFieldErrors(w, "typeId", "A valid integer is required.")
				return
			}
		}
		part.Close()
	}
	if f == nil {
		writeFieldErrors(w, "file", "No file was submitted.")
		return
	}
	f.TypeID, f.Uploaded = typeID, e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	f.ID = e.newIDLocked(6)
	if !e.commitOrFailLocked(w, record{Object: o}, record{File: f}) {
		return
	}
	writeJSON(w, http.StatusCreated, e.renderFileLocked(r, f, f.Uploaded))
}

func (e *Emulator) serveMe(w http.ResponseWriter, r *http.Request) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	writeJSON(w, http.StatusOK, userJSON{ID: e.st.meta.UserID, Email: userEmail, FirstName: "Emulated",
		LastName: "User", FullName: "Emulated User", Company: codeJSON{Code: emulatedCompany},
		Workspace:      idNameJSON{ID: emulatedWorkspace, Name: "Emulated workspace"},
		DefaultStorage: e.storageJSONLocked(r, true)})
}

func (e *Emulator) serveCredentials(w http.ResponseWriter, r *http.Request) {
	// The body (empty: the default storage; or a storage and paths) names storage the emulator has one of.
	var in struct {
		Storage *struct {
			ID string `json:"id"`
		} `json:"storage"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			writeDetail(w, http.StatusBadRequest, "JSON parse error - "+err.Error())
			return
		}
		if in.Storage != nil && in.Storage.ID != "" && in.Storage.ID != storageID {
			writeDetail(w, http.StatusNotFound, "Storage not found.")
			return
		}
	}
	c := &credRecord{AccessKey: "ASIA" + strings.ToUpper(randomID(16)), SecretKey: randomID(40),
		SessionToken: randomID(64), Expires: e.now().Add(credentialLifetime)}
	e.mu.Lock()
	err := e.commitLocked(record{Cred: c})
	base := e.pathBaseLocked()
	e.mu.Unlock()
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return
	}
	e.s3.AddAuthKeys(map[string]string{c.AccessKey: c.SecretKey})
	writeJSON(w, http.StatusOK, credentialsJSON{StorageType: storageType, AccessKey: c.AccessKey,
		SecretKey: c.SecretKey, SessionToken: c.SessionToken, StorageDir: base, Expiration: fmtTime(c.Expires),
		Region: StorageRegion, Container: StorageBucket, Endpoint: baseURL(r)})
}

// registerJSON is the body of POST /api/v3/files/.
type registerJSON struct {
	TypeID               int            `json:"typeId"`
	Name                 string         `json:"name"`
	EncodedEncryptionKey string         `json:"encodedEncryptionKey"`
	PathParts            pathPartsJSON  `json:"pathParts"`
	IsUploaded           *bool          `json:"isUploaded"`
	DecryptedSize        *int64         `json:"decryptedSize"`
	FileChecksums        []checksumJSON `json:"fileChecksums"`
}

// serveRegister registers an object uploaded straight to storage as a file: the object must exist,
// decrypt with the given key and its iv metadata, and match decryptedSize and the sha512.
func (e *Emulator) serveRegister(w http.ResponseWriter, r *http.Request) {
	var in registerJSON
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		writeDetail(w, http.StatusBadRequest, "JSON parse error - "+err.Error())
		return
	}
	key, err := base64.StdEncoding.DecodeString(in.EncodedEncryptionKey)
	switch {
	case strings.TrimSpace(in.Name) == "":
		writeFieldErrors(w, "name", "This field is required.")
		return
	case e.uploadNames.refused(in.Name):
		writeFieldErrors(w, "name", badFileName)
		return
	case err != nil || len(key) != cbc.KeySize:
		writeFieldErrors(w, "encodedEncryptionKey", "Must be the base64 of a 32-byte key.")
		return
	case in.PathParts.Container != StorageBucket || in.PathParts.Path == "":
		writeFieldErrors(w, "pathParts", "Unknown storage container or empty path.")
		return
	case in.DecryptedSize == nil:
		writeFieldErrors(w, "decryptedSize", "This field is required.")
		return
	}
	var want string
	for _, c := range in.FileChecksums {
		if strings.EqualFold(c.HashFunction, "sha512") {
			want = strings.ToLower(c.FileHash)
		}
	}
	if want == "" {
		writeFieldErrors(w, "fileChecksums", "A sha512 checksum is required.")
		return
	}
	e.mu.RLock()
	obj, ok := e.st.objects[in.PathParts.Path]
	e.mu.RUnlock()
	if !ok {
		writeFieldErrors(w, "pathParts", "No object at this path.")
		return
	}
	if cbc.CiphertextSize(*in.DecryptedSize) != obj.Size {
		writeFieldErrors(w, "decryptedSize", "Does not match the stored object's size.")
		return
	}
	iv, err := objectIV(obj)
	if err != nil {
		writeFieldErrors(w, "pathParts", "The object has no valid iv metadata.")
		return
	}
	or, err := openObject(e.blobs, obj)
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return
	}
	defer or.Close()
	plain, err := cbc.NewDecryptingReader(io.NewSectionReader(or, 0, or.Size()), key, iv, *in.DecryptedSize)
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return
	}
	h := sha512.New()
	if _, err := io.Copy(h, plain); err != nil {
		writeFieldErrors(w, "encodedEncryptionKey", "The object does not decrypt with this key: "+err.Error())
		return
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		writeFieldErrors(w, "fileChecksums", "sha512 mismatch: the stored object's plaintext hashes to "+got+".")
		return
	}
	typeID := in.TypeID
	if typeID == 0 {
		typeID = TypeInput
	}
	f := &fileRecord{Name: e.uploadNames.storedAs(in.Name), TypeID: typeID, Size: *in.DecryptedSize, Key: key, SHA512: got,
		ObjectKey: in.PathParts.Path, Uploaded: e.now(), Owner: userEmail}
	e.mu.Lock()
	defer e.mu.Unlock()
	f.ID = e.newIDLocked(6)
	if !e.commitOrFailLocked(w, record{File: f}) {
		return
	}
	writeJSON(w, http.StatusCreated, e.renderFileLocked(r, f, f.Uploaded))
}
