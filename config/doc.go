// Package config reads a tilefeed connector file: the Kafka Connect shape
// ({"name": …, "config": {…}, "features": […]}, or a flat property map with
// "features" beside the properties), with the Debezium PostgreSQL
// connector's property names for the source and tilefeed's own names for
// the rest.
//
// Load resolves ${env:NAME} and ${file:PATH} references, applies defaults
// (all in defaults.go) and validates everything that can be checked without
// a database, reporting every problem at once, each under its property
// path. Checks against the live tables happen at startup (connector).
package config
