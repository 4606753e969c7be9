package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithy "github.com/aws/smithy-go"
)

// Direct storage access: the S3 side of uploads and reads, with the short-lived credentials of
// POST /api/v3/credentials/. S3 requests go over their own HTTP client and never through the API's
// throttle scopes: storage is not rate limited the way the API is, and that is the point of going direct.

// StorageTypeS3 is the storageType of S3 storages; only those are reachable directly.
const StorageTypeS3 = "S3Storage"

// DefaultS3Region is used when neither the storage settings nor the credentials name a region.
const DefaultS3Region = "us-east-1"

// assumedCredentialLifetime is the life of credentials that come without an expiration: "about 15
// minutes" [C]. The cache refreshes credentialRefreshWindow before the end, so a part that starts just
// before expiry still signs with valid keys.
const (
	assumedCredentialLifetime = 15 * time.Minute
	credentialRefreshWindow   = 3 * time.Minute
)

// DefaultS3MaxAttempts bounds the SDK's own retries of one S3 request (first try included). An upload
// part that still fails is retried by its caller, who can resume from a journal; a read falls back.
const DefaultS3MaxAttempts = 5

// DefaultS3MaxBackoff caps the SDK's backoff between attempts.
const DefaultS3MaxBackoff = 5 * time.Second

// S3Options configure an S3Client.
type S3Options struct {
	// Credentials asks for credentials on a given storage; nil = the user's default storage.
	Credentials *CredentialsRequest
	// Region and Endpoint come from the storage's connectionSettings. "" = what the credentials answer
	// says, else DefaultS3Region and AWS. An Endpoint (the emulator's) means path-style addressing.
	Region   string
	Endpoint string
	// HTTPClient carries the S3 requests; nil = one under the Client's Policy (a pool separate from the API's).
	HTTPClient *http.Client
	// MaxAttempts per S3 request, first try included; 0 = DefaultS3MaxAttempts.
	MaxAttempts int
	// MaxBackoff between SDK attempts; 0 = DefaultS3MaxBackoff.
	MaxBackoff time.Duration
	// Logger; nil = the Client's.
	Logger *slog.Logger
}

// S3Client is direct access to one storage: an AWS SDK client whose credentials are fetched through
// the API and refreshed before they expire. It is safe for concurrent use.
type S3Client struct {
	sdk      *s3.Client
	c        *Client
	log      *slog.Logger
	region   string
	endpoint string

	ivMu sync.Mutex        // guards ivs
	ivs  map[string][]byte // object key -> file IV, from the object's "iv" metadata
}

// maxCachedIVs bounds the IV cache; past it the cache is dropped and refilled (an IV costs at most
// one HEAD, and usually nothing: every GetObject answer carries the metadata).
const maxCachedIVs = 1 << 16

// NewS3Client fetches a first set of credentials (which also names the region and, on the emulator,
// the endpoint) and builds the S3 client on a provider that asks the API for fresh ones as these age.
func (c *Client) NewS3Client(ctx context.Context, o S3Options) (*S3Client, error) {
	first, err := c.Credentials(ctx, o.Credentials)
	if err != nil {
		return nil, fmt.Errorf("storage credentials: %w", err)
	}
	if first.StorageType != "" && first.StorageType != StorageTypeS3 {
		return nil, fmt.Errorf("storage credentials: %w: storage type %q is not S3", ErrBadRequest, first.StorageType)
	}
	region := firstNonEmpty(o.Region, first.Region, DefaultS3Region)
	endpoint := firstNonEmpty(o.Endpoint, first.Endpoint)
	hc := o.HTTPClient
	if hc == nil {
		hc = NewPolicyHTTPClient(c.policy)
	}
	hc = guardClient(hc) // the SDK copies error answers with io.Copy
	log := o.Logger
	if log == nil {
		log = c.log
	}
	attempts := o.MaxAttempts
	if attempts <= 0 {
		attempts = DefaultS3MaxAttempts
	}
	maxBackoff := o.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = DefaultS3MaxBackoff
	}
	prov := &credentialProvider{c: c, req: o.Credentials, now: c.now, first: &first}
	opts := s3.Options{
		Region:      region,
		Credentials: aws.NewCredentialsCache(prov, func(co *aws.CredentialsCacheOptions) { co.ExpiryWindow = credentialRefreshWindow }),
		HTTPClient:  hc,
		Retryer: retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.MaxBackoff = maxBackoff
			// The default token bucket fails retries outright after a burst of errors, which a
			// flaky link produces; attempts are bounded per request instead.
			so.RateLimiter = ratelimit.None
		}),
		// Integrity comes from Content-MD5 (uploads) and from CBC padding and length checks (reads);
		// the SDK's default trailing CRC would switch every part to aws-chunked encoding.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if endpoint != "" {
		opts.BaseEndpoint = aws.String(endpoint)
		opts.UsePathStyle = true
	}
	var apiOpts []func(*s3.Options)
	if strings.HasPrefix(endpoint, "https://") || endpoint == "" {
		// Over TLS the payload needs no SHA-256 in the signature (Content-MD5 covers uploads), which
		// saves hashing every part twice. Over plain HTTP (a local emulator) SigV4 wants it signed.
		apiOpts = append(apiOpts, func(so *s3.Options) {
			so.APIOptions = append(so.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		})
	}
	return &S3Client{sdk: s3.New(opts, apiOpts...), c: c, log: log, region: region, endpoint: endpoint,
		ivs: map[string][]byte{}}, nil
}

// SDK is the underlying AWS SDK client, for the multipart calls of uploads.
func (s *S3Client) SDK() *s3.Client { return s.sdk }

// Region and Endpoint the client talks to ("" endpoint: AWS).
func (s *S3Client) Region() string   { return s.region }
func (s *S3Client) Endpoint() string { return s.endpoint }

// credentialProvider hands the SDK credentials from POST /api/v3/credentials/. The SDK's
// CredentialsCache around it serialises calls and refreshes ahead of expiry.
type credentialProvider struct {
	c   *Client
	req *CredentialsRequest
	now func() time.Time

	mu    sync.Mutex          // guards first
	first *StorageCredentials // the answer NewS3Client already fetched, used once
}

func (p *credentialProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	p.mu.Lock()
	first := p.first
	p.first = nil
	p.mu.Unlock()
	var sc StorageCredentials
	if first != nil {
		sc = *first
	} else {
		var err error
		if sc, err = p.c.Credentials(ctx, p.req); err != nil {
			return aws.Credentials{}, fmt.Errorf("storage credentials: %w", err)
		}
	}
	if sc.AccessKey == "" || sc.SecretKey == "" {
		return aws.Credentials{}, errors.New("storage credentials: answer has no S3 access key")
	}
	exp := sc.Expiration.Time
	if exp.IsZero() {
		exp = p.now().Add(assumedCredentialLifetime)
	}
	return aws.Credentials{AccessKeyID: sc.AccessKey, SecretAccessKey: sc.SecretKey, SessionToken: sc.SessionToken,
		Source: "rescale", CanExpire: true, Expires: exp}, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// IsNoSuchUpload says whether an S3 error means the multipart upload is unknown (aborted, expired, or
// lost by the storage): the caller starts again.
func IsNoSuchUpload(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload"
}

// IsNoSuchKey says whether an S3 error means the object does not exist.
func IsNoSuchKey(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		}
	}
	return false
}
