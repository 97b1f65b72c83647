"""The browser SDK (`/sdk/alloy.js`) and the hosted connect pages (`/connect/...`)."""
