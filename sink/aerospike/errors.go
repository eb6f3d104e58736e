package aerospike

import (
	"errors"
	"fmt"

	as "github.com/aerospike/aerospike-client-go/v7"
	"github.com/aerospike/aerospike-client-go/v7/types"

	"github.com/tilefeed/tilefeed/sink"
)

// conflictCodes are the per-record results that mean "the generation was not
// the one expected": GENERATION_ERROR for a stale generation, KEY_EXISTS_ERROR
// for a create (Gen 0) of a record that exists, KEY_NOT_FOUND_ERROR for a
// rewrite (Gen > 0) of a record that is gone (deleted or expired).
func isConflict(rc types.ResultCode) bool {
	switch rc {
	case types.GENERATION_ERROR, types.KEY_EXISTS_ERROR, types.KEY_NOT_FOUND_ERROR:
		return true
	}
	return false
}

// unavailableCodes are the results after which a write may or may not have
// landed and a retry (after a re-read) may succeed: the client gave up
// waiting, could not reach a node or had no connection to it, or the server
// shed the request because the cluster or a device is busy or in flux.
var unavailableCodes = []types.ResultCode{
	types.TIMEOUT,
	types.NETWORK_ERROR,
	types.NO_RESPONSE,
	types.MAX_RETRIES_EXCEEDED,
	types.MAX_ERROR_RATE,
	types.SERVER_NOT_AVAILABLE,
	types.INVALID_NODE_ERROR,
	types.INVALID_CLUSTER_PARTITION_MAP,
	types.NO_AVAILABLE_CONNECTIONS_TO_NODE,
	types.CLUSTER_KEY_MISMATCH,
	types.PARTITION_UNAVAILABLE,
	types.KEY_BUSY,
	types.DEVICE_OVERLOAD,
	types.BATCH_QUEUES_FULL,
}

func isUnavailableCode(rc types.ResultCode) bool {
	for _, c := range unavailableCodes {
		if rc == c {
			return true
		}
	}
	return false
}

// isUnavailable classifies an error returned by the client, looking through
// its chain (a batch error wraps the per-node errors).
func isUnavailable(err error) bool {
	var ae as.Error
	if errors.As(err, &ae) {
		return ae.Matches(unavailableCodes...)
	}
	return false
}

// wrap attaches what was being done to a client error and, when the store
// could not be reached or did not answer, sink.ErrUnavailable; both stay
// reachable with errors.Is and errors.As.
func wrap(doing string, err error) error {
	if isUnavailable(err) {
		return fmt.Errorf("%s: %w: %w", doing, sink.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}
