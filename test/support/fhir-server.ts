/** The FHIR server (fhir-router behind express, with faults) now lives in src/demo: the demo runs it too. */
export * from '../../src/demo/fhir-server.ts';
