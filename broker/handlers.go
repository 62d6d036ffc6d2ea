package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// handler runs a request on the connection's reader goroutine and returns
// how to produce its response. Anything slow must be deferred into the reply.
type handler func(c *conn, req *request) reply

// apiRange is the versions served for one API key.
type apiRange struct{ min, max int16 }

// apis is the compatibility table; each API's file header says the same.
var apis = map[kmsg.Key]apiRange{
	kmsg.Produce:                 {0, 13}, // v0-2 only for old librdkafka's feature probe: see 00_produce.go
	kmsg.Fetch:                   {0, 17}, // v0-3 only for old librdkafka's feature probe: see 01_fetch.go
	kmsg.ListOffsets:             {1, 10},
	kmsg.Metadata:                {0, 12},
	kmsg.ApiVersions:             {0, 4},
	kmsg.CreateTopics:            {0, 7},
	kmsg.DeleteTopics:            {0, 6},
	kmsg.DeleteRecords:           {0, 2},
	kmsg.InitProducerID:          {0, 4},
	kmsg.DescribeConfigs:         {0, 4},
	kmsg.AlterConfigs:            {0, 2},
	kmsg.CreatePartitions:        {0, 3},
	kmsg.IncrementalAlterConfigs: {0, 1},
	kmsg.DescribeCluster:         {0, 2},
	kmsg.OffsetCommit:            {0, 10},
	kmsg.OffsetFetch:             {0, 10},
	kmsg.FindCoordinator:         {0, 6},
	kmsg.JoinGroup:               {0, 9},
	kmsg.Heartbeat:               {0, 4},
	kmsg.LeaveGroup:              {0, 5},
	kmsg.SyncGroup:               {0, 5},
	kmsg.DescribeGroups:          {0, 6},
	kmsg.ListGroups:              {0, 5},
	kmsg.DeleteGroups:            {0, 3},
	kmsg.OffsetDelete:            {0, 0},
	kmsg.ConsumerGroupHeartbeat:  {0, 1},
	kmsg.ConsumerGroupDescribe:   {0, 1},
	kmsg.OffsetForLeaderEpoch:    {0, 4},

	kmsg.AddPartitionsToTxn:   {0, 5},
	kmsg.AddOffsetsToTxn:      {0, 4},
	kmsg.EndTxn:               {0, 4},
	kmsg.WriteTxnMarkers:      {0, 1},
	kmsg.TxnOffsetCommit:      {0, 4},
	kmsg.DescribeProducers:    {0, 0},
	kmsg.DescribeTransactions: {0, 0},
	kmsg.ListTransactions:     {0, 1},

	kmsg.AlterPartitionAssignments:  {0, 1},
	kmsg.ListPartitionReassignments: {0, 0},
	kmsg.ElectLeaders:               {0, 2},

	kmsg.SASLHandshake:                {0, 1},
	kmsg.SASLAuthenticate:             {0, 2},
	kmsg.DescribeACLs:                 {0, 3},
	kmsg.CreateACLs:                   {0, 3},
	kmsg.DeleteACLs:                   {0, 3},
	kmsg.DescribeUserSCRAMCredentials: {0, 0},
	kmsg.AlterUserSCRAMCredentials:    {0, 0},
}

var handlers map[int16]handler

func init() {
	handlers = map[int16]handler{
		int16(kmsg.Produce):                 handleProduce,
		int16(kmsg.Fetch):                   handleFetch,
		int16(kmsg.ListOffsets):             handleListOffsets,
		int16(kmsg.Metadata):                handleMetadata, // handleMetadata + IsInternal for __consumer_offsets
		int16(kmsg.ApiVersions):             handleApiVersions,
		int16(kmsg.CreateTopics):            handleCreateTopics,
		int16(kmsg.DeleteTopics):            handleDeleteTopics,
		int16(kmsg.DeleteRecords):           handleDeleteRecords,
		int16(kmsg.InitProducerID):          handleInitProducerID,
		int16(kmsg.DescribeConfigs):         handleDescribeConfigs,
		int16(kmsg.AlterConfigs):            handleAlterConfigs,
		int16(kmsg.CreatePartitions):        handleCreatePartitions,
		int16(kmsg.IncrementalAlterConfigs): handleIncrementalAlterConfigs,
		int16(kmsg.DescribeCluster):         handleDescribeCluster,
		int16(kmsg.OffsetCommit):            coordinated(handleOffsetCommit),
		int16(kmsg.OffsetFetch):             coordinated(handleOffsetFetch),
		int16(kmsg.FindCoordinator):         handleFindCoordinator,
		int16(kmsg.JoinGroup):               coordinated(handleJoinGroup),
		int16(kmsg.Heartbeat):               coordinated(handleHeartbeat),
		int16(kmsg.LeaveGroup):              coordinated(handleLeaveGroup),
		int16(kmsg.SyncGroup):               coordinated(handleSyncGroup),
		int16(kmsg.DescribeGroups):          coordinated(handleDescribeGroups),
		int16(kmsg.ListGroups):              handleListGroups,
		int16(kmsg.DeleteGroups):            coordinated(handleDeleteGroups),
		int16(kmsg.OffsetDelete):            coordinated(handleOffsetDelete),
		int16(kmsg.ConsumerGroupHeartbeat):  coordinated(handleConsumerGroupHeartbeat),
		int16(kmsg.ConsumerGroupDescribe):   coordinated(handleConsumerGroupDescribe),
		int16(kmsg.OffsetForLeaderEpoch):    handleOffsetForLeaderEpoch,

		int16(kmsg.AddPartitionsToTxn):   handleAddPartitionsToTxn,
		int16(kmsg.AddOffsetsToTxn):      handleAddOffsetsToTxn,
		int16(kmsg.EndTxn):               handleEndTxn,
		int16(kmsg.WriteTxnMarkers):      handleWriteTxnMarkers,
		int16(kmsg.TxnOffsetCommit):      coordinated(handleTxnOffsetCommit),
		int16(kmsg.DescribeProducers):    handleDescribeProducers,
		int16(kmsg.DescribeTransactions): handleDescribeTransactions,
		int16(kmsg.ListTransactions):     handleListTransactions,

		int16(kmsg.AlterPartitionAssignments):  handleAlterPartitionAssignments,
		int16(kmsg.ListPartitionReassignments): handleListPartitionReassignments,
		int16(kmsg.ElectLeaders):               handleElectLeaders,

		int16(kmsg.SASLHandshake):                handleSASLHandshake,
		int16(kmsg.SASLAuthenticate):             handleSASLAuthenticate,
		int16(kmsg.DescribeACLs):                 handleDescribeACLs,
		int16(kmsg.CreateACLs):                   handleCreateACLs,
		int16(kmsg.DeleteACLs):                   handleDeleteACLs,
		int16(kmsg.DescribeUserSCRAMCredentials): handleDescribeUserSCRAMCredentials,
		int16(kmsg.AlterUserSCRAMCredentials):    handleAlterUserSCRAMCredentials,
	}
}

func versionSupported(key, version int16) bool {
	r, ok := apis[kmsg.Key(key)]
	return ok && version >= r.min && version <= r.max
}
